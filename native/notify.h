/* sd_notify(3): readiness and status messages to the service manager's datagram socket. */
#ifndef STAGEFS_NOTIFY_H
#define STAGEFS_NOTIFY_H

/* Sends `message` to the socket at `path` ('@' starts an abstract name). Returns 0 or an errno. */
int stagefs_notify(const char *path, const char *message);

#endif
