/*
 * sd_notify without libsystemd: one datagram on a unix socket. Node has no datagram unix
 * sockets, and a message sent from this process (not from a helper it spawns) is one systemd
 * accepts under NotifyAccess=main and never loses to the helper-exits-first race.
 */
#define _GNU_SOURCE
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int stagefs_notify(const char *path, const char *message) {
  struct sockaddr_un address;
  size_t length = strlen(path);
  if (length == 0 || length >= sizeof(address.sun_path)) return EINVAL;
  if (path[0] != '/' && path[0] != '@') return EAFNOSUPPORT;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  memcpy(address.sun_path, path, length);
  if (path[0] == '@') address.sun_path[0] = '\0'; /* an abstract socket name */
  socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + (path[0] == '/' ? 1 : 0));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ssize_t sent = sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&address, address_length);
  int err = sent < 0 ? errno : 0;
  close(fd);
  return err;
}
