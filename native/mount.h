/* Mounting a FUSE filesystem: mount(2) as root, the fusermount3 helper otherwise. */
#ifndef STAGEFS_MOUNT_H
#define STAGEFS_MOUNT_H

#include <stddef.h>

typedef struct mount_options {
  const char *mountpoint;
  const char *source;  /* shown as the source in /proc/mounts and df */
  int allow_other;
  int read_only;
} mount_options;

/* Returns the /dev/fuse descriptor of the new mount, or -1 with a message in `error`. */
int stagefs_mount(const mount_options *options, char *error, size_t error_size);

#endif
