/*
 * File handles as an NFS server keeps them: `file-handle save PATH` prints PATH's handle
 * (name_to_handle_at) in hex; `file-handle open MOUNTPOINT HEX` opens that handle again
 * (open_by_handle_at, which needs CAP_DAC_READ_SEARCH) and copies the file's bytes to stdout.
 * Failures print the errno's name on stderr and exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerrorname_np(errno));
  return 1;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "save") == 0) {
    struct file_handle *handle = malloc(sizeof(*handle) + MAX_HANDLE_SZ);
    int mount_id;
    handle->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, argv[2], handle, &mount_id, 0) < 0) return fail("name_to_handle_at");
    printf("%08x", handle->handle_type);
    for (unsigned i = 0; i < handle->handle_bytes; i++) printf("%02x", handle->f_handle[i]);
    printf("\n");
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "open") == 0) {
    size_t hex = strlen(argv[3]);
    if (hex < 8 || hex % 2) return fprintf(stderr, "bad handle\n"), 1;
    struct file_handle *handle = malloc(sizeof(*handle) + hex / 2);
    unsigned type;
    sscanf(argv[3], "%8x", &type);
    handle->handle_type = (int)type;
    handle->handle_bytes = (unsigned)(hex - 8) / 2;
    for (unsigned i = 0; i < handle->handle_bytes; i++) sscanf(argv[3] + 8 + 2 * i, "%2hhx", &handle->f_handle[i]);
    int mount_fd = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (mount_fd < 0) return fail("open mountpoint");
    int fd = open_by_handle_at(mount_fd, handle, O_RDONLY);
    if (fd < 0) return fail("open_by_handle_at");
    char buffer[65536];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0) fwrite(buffer, 1, (size_t)n, stdout);
    if (n < 0) return fail("read");
    return 0;
  }
  fprintf(stderr, "usage: file-handle save PATH | file-handle open MOUNTPOINT HEX\n");
  return 2;
}
