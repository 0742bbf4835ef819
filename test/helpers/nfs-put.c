/*
 * `nfs-put URL FILE`: writes FILE to the NFS URL (nfs://host/export/path?version=4&nfsport=N)
 * with libnfs, in writes of WRITE_SIZE bytes. nfs-cp cannot write over NFSv4 with Debian's
 * libnfs 4.0: a write request of 4 KiB or more fails to encode ("ZDR error: Failed to encode
 * COMPOUND4args"), so writes stay below that; NFSv3 would need rpcbind.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>

#define WRITE_SIZE 2048

int main(int argc, char **argv) {
  if (argc != 3) return fprintf(stderr, "usage: nfs-put URL FILE\n"), 2;
  int in = open(argv[2], O_RDONLY);
  if (in < 0) return perror(argv[2]), 1;
  struct nfs_context *nfs = nfs_init_context();
  struct nfs_url *url = nfs ? nfs_parse_url_full(nfs, argv[1]) : NULL;
  if (!url) return fprintf(stderr, "bad URL %s: %s\n", argv[1], nfs ? nfs_get_error(nfs) : "no memory"), 1;
  struct nfsfh *fh;
  if (nfs_mount(nfs, url->server, url->path) != 0 || nfs_create(nfs, url->file, O_WRONLY | O_TRUNC, 0644, &fh) != 0) {
    return fprintf(stderr, "%s: %s\n", argv[1], nfs_get_error(nfs)), 1;
  }
  char buffer[WRITE_SIZE];
  uint64_t offset = 0;
  ssize_t n;
  while ((n = read(in, buffer, sizeof(buffer))) > 0) {
    for (ssize_t done = 0; done < n;) {
      int written = nfs_pwrite(nfs, fh, offset, (uint64_t)(n - done), buffer + done);
      if (written <= 0) return fprintf(stderr, "write at %llu: %s\n", (unsigned long long)offset, nfs_get_error(nfs)), 1;
      done += written;
      offset += (uint64_t)written;
    }
  }
  if (n < 0) return perror(argv[2]), 1;
  if (nfs_fsync(nfs, fh) != 0 || nfs_close(nfs, fh) != 0) return fprintf(stderr, "close: %s\n", nfs_get_error(nfs)), 1;
  nfs_destroy_url(url);
  nfs_destroy_context(nfs);
  printf("wrote %llu bytes\n", (unsigned long long)offset);
  return 0;
}
