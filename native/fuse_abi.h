/*
 * The FUSE kernel protocol as stagefs speaks it: <linux/fuse.h> from the build machine's
 * headers, plus what protocol 7.40 added for passthrough, which older headers lack.
 */
#ifndef STAGEFS_FUSE_ABI_H
#define STAGEFS_FUSE_ABI_H

#include <linux/fuse.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define STAGEFS_PROTO_MAJOR 7
#define STAGEFS_PROTO_MINOR 40

#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37)
#endif
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1 << 7)
#endif

/* fuse_init_out as of 7.40: the first unused word became max_stack_depth. */
struct stagefs_init_out {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint32_t unused[6];
};

/* The reply size of INIT for kernels before 7.23. */
#define STAGEFS_COMPAT_22_INIT_OUT_SIZE 24

struct stagefs_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};

#define STAGEFS_DEV_IOC_MAGIC 229
#define STAGEFS_DEV_IOC_BACKING_OPEN _IOW(STAGEFS_DEV_IOC_MAGIC, 1, struct stagefs_backing_map)
#define STAGEFS_DEV_IOC_BACKING_CLOSE _IOW(STAGEFS_DEV_IOC_MAGIC, 2, uint32_t)

#endif
