#define _GNU_SOURCE
#include "mount.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int mount_directly(const mount_options *o, char *error, size_t error_size) {
  struct stat st;
  if (stat(o->mountpoint, &st) != 0) {
    snprintf(error, error_size, "%s: %s", o->mountpoint, strerror(errno));
    return -1;
  }
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    snprintf(error, error_size, "cannot open /dev/fuse: %s", strerror(errno));
    return -1;
  }
  char data[256];
  snprintf(data, sizeof(data), "fd=%d,rootmode=%o,user_id=%u,group_id=%u%s%s", fd, st.st_mode & S_IFMT, getuid(), getgid(),
           o->allow_other ? ",allow_other" : "", o->allow_other ? ",default_permissions" : "");
  unsigned long flags = MS_NOSUID | MS_NODEV | (o->read_only ? MS_RDONLY : 0);
  if (mount(o->source, o->mountpoint, "fuse.stagefs", flags, data) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    snprintf(error, error_size, "mount %s: %s", o->mountpoint, strerror(err));
    return -1;
  }
  return fd;
}

/* Reads what fusermount3 said on its standard error, up to `size` - 1 bytes, trimmed. */
static void read_message(int fd, char *text, size_t size) {
  size_t used = 0;
  for (;;) {
    char chunk[256];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t keep = (size_t)n < size - 1 - used ? (size_t)n : size - 1 - used;
    memcpy(text + used, chunk, keep);
    used += keep;
  }
  while (used > 0 && (text[used - 1] == '\n' || text[used - 1] == ' ')) used--;
  text[used] = '\0';
  for (char *c = text; *c; c++)
    if (*c == '\n') *c = ';'; /* one line */
}

/*
 * fusermount3 mounts for unprivileged users and hands the descriptor back over a socket. What it
 * says on standard error is kept for the error message: it is the reason a mount failed.
 */
static int mount_with_helper(const mount_options *o, char *error, size_t error_size) {
  int sockets[2], messages[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) {
    snprintf(error, error_size, "socketpair: %s", strerror(errno));
    return -1;
  }
  if (pipe2(messages, O_CLOEXEC) != 0) {
    snprintf(error, error_size, "pipe: %s", strerror(errno));
    close(sockets[0]);
    close(sockets[1]);
    return -1;
  }
  fcntl(sockets[0], F_SETFD, FD_CLOEXEC);
  char options[1024], commfd[32];
  snprintf(options, sizeof(options), "nosuid,nodev,%s,fsname=%s,subtype=stagefs%s", o->read_only ? "ro" : "rw", o->source,
           o->allow_other ? ",allow_other,default_permissions" : "");
  snprintf(commfd, sizeof(commfd), "%d", sockets[1]);
  setenv("_FUSE_COMMFD", commfd, 1);
  char *argv[] = {"fusermount3", "-o", options, "--", (char *)o->mountpoint, NULL};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, messages[1], STDERR_FILENO);
  pid_t pid;
  int err = posix_spawnp(&pid, "fusermount3", &actions, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  unsetenv("_FUSE_COMMFD");
  close(sockets[1]);
  close(messages[1]);
  if (err) {
    close(sockets[0]);
    close(messages[0]);
    snprintf(error, error_size, "cannot run fusermount3: %s", strerror(err));
    return -1;
  }
  char byte;
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {&byte, 1};
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
  ssize_t received;
  do received = recvmsg(sockets[0], &message, 0);
  while (received < 0 && errno == EINTR);
  close(sockets[0]);
  char said[400];
  read_message(messages[0], said, sizeof(said));
  close(messages[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  struct cmsghdr *cmsg = received > 0 ? CMSG_FIRSTHDR(&message) : NULL;
  if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) {
    const char *reason = strncmp(said, "fusermount3: ", 13) == 0 ? said + 13 : said;
    if (reason[0])
      snprintf(error, error_size, "fusermount3 could not mount %s: %s", o->mountpoint, reason);
    else
      snprintf(error, error_size, "fusermount3 could not mount %s (exit %d, no message)", o->mountpoint, WEXITSTATUS(status));
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

int stagefs_mount(const mount_options *o, char *error, size_t error_size) {
  if (geteuid() == 0) return mount_directly(o, error, error_size);
  return mount_with_helper(o, error, error_size);
}
