/*
 * A service manager's end of sd_notify, for tests: binds a unix datagram socket (a path, or an
 * abstract name after '@'), prints "listening", then one line per message received:
 * "pid=PID MESSAGE" with the message's newlines shown as '|'. Node has no datagram unix sockets.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: notify-listener SOCKET\n");
    return 2;
  }
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  size_t length = strlen(argv[1]);
  if (length >= sizeof(address.sun_path)) return 2;
  memcpy(address.sun_path, argv[1], length);
  if (argv[1][0] == '@') address.sun_path[0] = '\0';
  socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + (argv[1][0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  int on = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0 ||
      bind(fd, (struct sockaddr *)&address, address_length) != 0) {
    perror("notify-listener");
    return 1;
  }
  printf("listening\n");
  fflush(stdout);
  for (;;) {
    char text[4097];
    char control[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {text, sizeof(text) - 1};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
    ssize_t n = recvmsg(fd, &message, 0);
    if (n < 0) continue;
    text[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
      if (text[i] == '\n') text[i] = '|';
    int pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        struct ucred credentials;
        memcpy(&credentials, CMSG_DATA(c), sizeof(credentials));
        pid = credentials.pid;
      }
    }
    printf("pid=%d %s\n", pid, text);
    fflush(stdout);
  }
}
