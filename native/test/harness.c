/*
 * A Node-free harness for the native session, to run under valgrind or AddressSanitizer:
 * mounts a one-file filesystem, answers requests the way the JavaScript side does, registers
 * the file for the fast path (and, where the kernel allows, opens it in passthrough), reads
 * it from a child process, unmounts, and frees everything. Exit status 0 means the bytes read
 * back right; memory and descriptor hygiene is the checker's to judge.
 *
 * In `orphaned` mode the event channel closes right after INIT, as when the process tears it
 * down under a live mount: every request must then fail with EIO in C (the reader's cmp exits
 * 2 with an I/O error) instead of hanging the reader or touching freed memory.
 *
 * usage: harness MOUNTPOINT STAGED_FILE [passthrough|orphaned]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../fuse_abi.h"
#include "../mount.h"
#include "../session.h"

extern char **environ;

/* The one N-API call the session makes, served by a queue the main thread drains. */
typedef struct queued {
  session_event *event;
  struct queued *next;
} queued;

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static queued *head, *tail;

napi_status napi_call_threadsafe_function(napi_threadsafe_function func, void *data,
                                          napi_threadsafe_function_call_mode mode) {
  (void)func;
  (void)mode;
  queued *item = malloc(sizeof(*item));
  if (!item) return napi_generic_failure;
  item->event = data;
  item->next = NULL;
  pthread_mutex_lock(&queue_lock);
  if (tail) tail->next = item;
  else head = item;
  tail = item;
  pthread_cond_signal(&queue_ready);
  pthread_mutex_unlock(&queue_lock);
  return napi_ok;
}

/* The next event, or NULL after 100 ms without one. */
static session_event *next_event(void) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_nsec += 100 * 1000 * 1000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&queue_lock);
  while (!head) {
    if (pthread_cond_timedwait(&queue_ready, &queue_lock, &deadline) == ETIMEDOUT) {
      pthread_mutex_unlock(&queue_lock);
      return NULL;
    }
  }
  queued *item = head;
  head = item->next;
  if (!head) tail = NULL;
  pthread_mutex_unlock(&queue_lock);
  session_event *event = item->event;
  free(item);
  return event;
}

#define FILE_INO 2
#define FILE_FH 7
#define BLOCK 4096

static void fill_attr(struct fuse_attr *attr, uint64_t ino, uint32_t mode, uint64_t size) {
  memset(attr, 0, sizeof(*attr));
  attr->ino = ino;
  attr->mode = mode;
  attr->size = size;
  attr->nlink = 1;
  attr->blksize = BLOCK;
  attr->blocks = (size + 511) / 512;
}

/* Compares the file read through the mount with the staged file, in another program. */
static pid_t start_reader(const char *mountpoint, const char *staged) {
  static char path[4096];
  snprintf(path, sizeof(path), "%s/file", mountpoint);
  char *argv[] = {"cmp", path, (char *)staged, NULL};
  pid_t pid;
  return posix_spawnp(&pid, "cmp", NULL, NULL, argv, environ) == 0 ? pid : -1;
}

/* Closes the event channel after INIT, then reads through the mount: every request must fail, none hang. */
static int run_orphaned(session *s, const char *mountpoint, const char *staged, int staged_fd, uint8_t *bitmap) {
  session_event *event;
  while ((event = next_event()) == NULL || event->kind != SESSION_EVENT_INIT) {
    if (event) {
      free(event->data);
      free(event);
    }
  }
  free(event);
  session_close_events(s);
  alarm(60); /* a request left unanswered would hang the reader, and this harness with it */
  int reader_status = -1;
  pid_t reader = start_reader(mountpoint, staged);
  if (reader > 0) waitpid(reader, &reader_status, 0);
  umount2(mountpoint, MNT_DETACH);
  session_join(s);
  while ((event = next_event()) != NULL) {
    free(event->data);
    free(event);
  }
  close(s->fd);
  int exit_code = WIFEXITED(reader_status) ? WEXITSTATUS(reader_status) : -1;
  printf("events closed, reader exit %d\n", exit_code);
  session_release(s);
  free(bitmap);
  close(staged_fd);
  /* cmp exits 2 on an I/O error: the lookup was answered, with EIO. */
  return exit_code == 2 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MOUNTPOINT STAGED_FILE [passthrough|orphaned]\n", argv[0]);
    return 2;
  }
  const char *mountpoint = argv[1], *staged = argv[2];
  int want_passthrough = argc > 3 && strcmp(argv[3], "passthrough") == 0;
  int orphaned = argc > 3 && strcmp(argv[3], "orphaned") == 0;
  int staged_fd = open(staged, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (staged_fd < 0 || fstat(staged_fd, &st) != 0) {
    perror(staged);
    return 2;
  }
  size_t bitmap_size = (size_t)(st.st_size / BLOCK / 8 + 1);
  uint8_t *bitmap = malloc(bitmap_size);
  memset(bitmap, 0xff, bitmap_size);

  char error[512];
  mount_options options = {mountpoint, "harness", 0, 1};
  int fd = stagefs_mount(&options, error, sizeof(error));
  if (fd < 0) {
    fprintf(stderr, "mount: %s\n", error);
    return 2;
  }
  session *s = calloc(1, sizeof(*s));
  s->fd = fd;
  s->thread_count = 4;
  s->want_passthrough = want_passthrough;
  session_init(s);
  session_open_events(s, NULL);
  if (session_start(s) != 0) return 2;

  if (orphaned) return run_orphaned(s, mountpoint, staged, staged_fd, bitmap);

  pid_t reader = -1;
  int reader_status = -1, hits = 0, backing = -1, closed = 0;
  while (!closed) {
    session_event *event = next_event();
    if (reader > 0 && reader_status < 0 && waitpid(reader, &reader_status, WNOHANG) == reader) {
      umount2(mountpoint, MNT_DETACH);
    }
    if (!event) continue;
    if (event->kind == SESSION_EVENT_INIT) {
      reader = start_reader(mountpoint, staged);
    } else if (event->kind == SESSION_EVENT_HIT) {
      hits++;
    } else if (event->kind == SESSION_EVENT_CLOSED) {
      closed = 1;
    } else if (event->kind == SESSION_EVENT_REQUEST) {
      struct fuse_in_header *in = (struct fuse_in_header *)event->data;
      char *body = event->data + sizeof(*in);
      struct fuse_entry_out entry;
      struct fuse_attr_out attr_out;
      struct fuse_open_out open_out;
      struct iovec part = {NULL, 0};
      int err = 0;
      memset(&entry, 0, sizeof(entry));
      memset(&attr_out, 0, sizeof(attr_out));
      memset(&open_out, 0, sizeof(open_out));
      switch (in->opcode) {
        case FUSE_LOOKUP:
          if (in->nodeid == FUSE_ROOT_ID && strcmp(body, "file") == 0) {
            entry.nodeid = FILE_INO;
            fill_attr(&entry.attr, FILE_INO, S_IFREG | 0444, (uint64_t)st.st_size);
          }
          entry.entry_valid = 1;
          part = (struct iovec){&entry, sizeof(entry)};
          break;
        case FUSE_GETATTR:
          fill_attr(&attr_out.attr, in->nodeid, in->nodeid == FUSE_ROOT_ID ? S_IFDIR | 0555 : S_IFREG | 0444,
                    in->nodeid == FUSE_ROOT_ID ? 0 : (uint64_t)st.st_size);
          part = (struct iovec){&attr_out, sizeof(attr_out)};
          break;
        case FUSE_OPEN:
          open_out.fh = FILE_FH;
          if (s->passthrough) {
            struct stagefs_backing_map map = {.fd = staged_fd};
            backing = ioctl(s->fd, STAGEFS_DEV_IOC_BACKING_OPEN, &map);
          }
          if (backing >= 0) {
            open_out.open_flags = FOPEN_PASSTHROUGH;
            memcpy(&open_out.padding, &backing, sizeof(backing));
          } else {
            session_register_handle(s, FILE_FH, staged_fd, bitmap, bitmap_size, BLOCK, (uint64_t)st.st_size, NULL);
          }
          part = (struct iovec){&open_out, sizeof(open_out)};
          break;
        case FUSE_RELEASE: {
          fast_handle *h = session_unregister_handle(s, FILE_FH);
          if (h) {
            close(h->fd);
            free(h);
          }
          if (backing >= 0) {
            uint32_t id = (uint32_t)backing;
            ioctl(s->fd, STAGEFS_DEV_IOC_BACKING_CLOSE, &id);
            backing = -1;
          }
          break;
        }
        case FUSE_FLUSH:
          break;
        default:
          err = ENOSYS;
      }
      session_reply(s, in->unique, err, part.iov_base ? &part : NULL, part.iov_base ? 1 : 0);
    }
    free(event->data);
    free(event);
  }
  session_join(s);
  for (fast_handle *h = session_take_all_handles(s), *next; h; h = next) {
    next = h->next;
    close(h->fd);
    free(h);
  }
  close(s->fd);
  printf("passthrough %s, fast-path hits %d, reader exit %d\n", s->passthrough ? "on" : "off", hits,
         WIFEXITED(reader_status) ? WEXITSTATUS(reader_status) : -1);
  session_release(s);
  free(bitmap);
  close(staged_fd);
  return WIFEXITED(reader_status) && WEXITSTATUS(reader_status) == 0 ? 0 : 1;
}
