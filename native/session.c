#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse_abi.h"

/* What stagefs asks of the kernel at INIT; the reply carries the intersection with its offer. */
static const uint64_t WANTED_FLAGS = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_PARALLEL_DIROPS | FUSE_EXPORT_SUPPORT |
                                     FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_AUTO_INVAL_DATA |
                                     FUSE_ATOMIC_O_TRUNC | FUSE_ASYNC_DIO | FUSE_INIT_EXT;

void session_init(session *s) {
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->events_lock, NULL);
  pthread_cond_init(&s->reader_done, NULL);
  atomic_store(&s->refs, 1);
  s->events_open = 0;
}

void session_release(session *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  /* Handles still here belong to a JavaScript side that is gone: their bitmap references with it. */
  for (int i = 0; i < SESSION_HANDLE_BUCKETS; i++) {
    for (fast_handle *h = s->handles[i], *next; h; h = next) {
      next = h->next;
      close(h->fd);
      free(h);
    }
  }
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->events_lock);
  pthread_cond_destroy(&s->reader_done);
  free(s);
}

void session_open_events(session *s, napi_threadsafe_function events) {
  pthread_mutex_lock(&s->events_lock);
  s->events = events;
  s->events_open = 1;
  pthread_mutex_unlock(&s->events_lock);
}

void session_close_events(session *s) {
  pthread_mutex_lock(&s->events_lock);
  s->events_open = 0;
  pthread_mutex_unlock(&s->events_lock);
}

/* Hands an event to JavaScript; 0 (and the event freed) when the channel is closed or full. */
static int post(session *s, session_event *event) {
  int posted = 0;
  pthread_mutex_lock(&s->events_lock);
  if (s->events_open) {
    napi_status status = napi_call_threadsafe_function(s->events, event, napi_tsfn_nonblocking);
    posted = status == napi_ok;
    /* napi_closing: the channel is going away and must not be used again. */
    if (status == napi_closing) s->events_open = 0;
  }
  pthread_mutex_unlock(&s->events_lock);
  if (!posted) {
    free(event->data);
    free(event);
  }
  return posted;
}

static session_event *new_event(session_event_kind kind) {
  session_event *event = calloc(1, sizeof(*event));
  if (event) event->kind = kind;
  return event;
}

int session_reply(session *s, uint64_t unique, int error, const struct iovec *parts, int part_count) {
  struct iovec iov[8];
  struct fuse_out_header header;
  if (part_count > 7) return EINVAL;
  size_t length = sizeof(header);
  for (int i = 0; i < part_count; i++) {
    iov[i + 1] = parts[i];
    length += parts[i].iov_len;
  }
  header.len = (uint32_t)length;
  header.error = -error;
  header.unique = unique;
  iov[0].iov_base = &header;
  iov[0].iov_len = sizeof(header);
  for (;;) {
    ssize_t written = writev(s->fd, iov, part_count + 1);
    if (written >= 0) return 0;
    if (errno == EINTR) continue;
    /* ENOENT: the request was interrupted and the kernel no longer waits for it. */
    return errno == ENOENT ? 0 : errno;
  }
}

static void answer_init(session *s, const struct fuse_in_header *in, const struct fuse_init_in *init, size_t body_size) {
  struct stagefs_init_out out;
  memset(&out, 0, sizeof(out));
  out.major = STAGEFS_PROTO_MAJOR;
  if (init->major < STAGEFS_PROTO_MAJOR) {
    session_reply(s, in->unique, EPROTO, NULL, 0);
    return;
  }
  if (init->major > STAGEFS_PROTO_MAJOR) {
    /* The kernel retries INIT with our major version. */
    struct iovec part = {&out, 8};
    session_reply(s, in->unique, 0, &part, 1);
    return;
  }
  uint64_t offered = init->flags;
  /* flags2 is there only when the kernel speaks FUSE_INIT_EXT (and so sent the longer message). */
  if ((offered & FUSE_INIT_EXT) && body_size >= offsetof(struct fuse_init_in, flags2) + sizeof(init->flags2)) {
    offered |= (uint64_t)init->flags2 << 32;
  }
  uint64_t wanted = WANTED_FLAGS | (s->want_passthrough ? FUSE_PASSTHROUGH : 0);
  uint64_t granted = offered & wanted;
  out.minor = init->minor < STAGEFS_PROTO_MINOR ? init->minor : STAGEFS_PROTO_MINOR;
  out.flags = (uint32_t)granted;
  out.flags2 = (uint32_t)(granted >> 32);
  out.max_readahead = init->max_readahead;
  out.max_background = 64;
  out.congestion_threshold = 48;
  out.max_pages = SESSION_MAX_PAGES;
  out.max_write = (granted & FUSE_MAX_PAGES) ? SESSION_MAX_PAGES * 4096 : 32 * 4096;
  out.time_gran = 1;
  if (granted & FUSE_PASSTHROUGH) out.max_stack_depth = 1;
  s->proto_minor = out.minor;
  s->passthrough = (granted & FUSE_PASSTHROUGH) != 0;
  s->max_write = out.max_write;
  s->max_readahead = out.max_readahead;
  struct iovec part = {&out, out.minor < 23 ? STAGEFS_COMPAT_22_INIT_OUT_SIZE : sizeof(out)};
  session_reply(s, in->unique, 0, &part, 1);
  session_event *event = new_event(SESSION_EVENT_INIT);
  if (event) post(s, event);
}

static fast_handle *acquire_handle(session *s, uint64_t fh) {
  pthread_mutex_lock(&s->lock);
  fast_handle *h = s->handles[fh % SESSION_HANDLE_BUCKETS];
  while (h && h->fh != fh) h = h->next;
  if (h) h->readers++;
  pthread_mutex_unlock(&s->lock);
  return h;
}

static void release_handle(session *s, fast_handle *h) {
  pthread_mutex_lock(&s->lock);
  if (--h->readers == 0) pthread_cond_broadcast(&s->reader_done);
  pthread_mutex_unlock(&s->lock);
}

static int range_staged(const fast_handle *h, uint64_t start, uint64_t end) {
  for (uint64_t block = start / h->block_size; block <= (end - 1) / h->block_size; block++) {
    if ((block >> 3) >= h->bitmap_bytes) return 0; /* past the bits we were given: JavaScript decides */
    uint8_t bits = __atomic_load_n(&h->bitmap[block >> 3], __ATOMIC_ACQUIRE);
    if (!(bits & (1u << (block & 7)))) return 0;
  }
  return 1;
}

/*
 * Serves a READ of staged blocks from the staging file. Returns 1 when answered, 0 when the
 * request must go to JavaScript (unknown handle, or a block not staged yet).
 */
static int serve_staged_read(session *s, char *buffer) {
  const struct fuse_in_header *in = (const struct fuse_in_header *)buffer;
  const struct fuse_read_in *read_in = (const struct fuse_read_in *)(buffer + sizeof(*in));
  const uint64_t unique = in->unique;
  const uint64_t fh = read_in->fh;
  const uint64_t offset = read_in->offset;
  uint64_t end = offset + read_in->size;
  /* The reply data goes where the request was: never more than that buffer holds. */
  if (read_in->size > SESSION_BUFFER_SIZE - sizeof(struct fuse_out_header)) return 0;
  fast_handle *h = acquire_handle(s, fh);
  if (!h) return 0;
  if (end > h->size) end = h->size;
  int served = 0;
  if (offset >= end) {
    served = session_reply(s, unique, 0, NULL, 0) == 0;
  } else if (range_staged(h, offset, end)) {
    /* The request is parsed; its buffer now carries the reply data. */
    char *data = buffer + sizeof(struct fuse_out_header);
    size_t wanted = end - offset, done = 0;
    while (done < wanted) {
      ssize_t n = pread(h->fd, data + done, wanted - done, (off_t)(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += (size_t)n;
    }
    if (done == wanted) {
      /* Told before the reply, so JavaScript hears of it before any RELEASE of the handle. */
      session_event *event = new_event(SESSION_EVENT_HIT);
      if (event) {
        event->fh = fh;
        event->offset = offset;
        event->length = done;
        post(s, event);
      }
      struct iovec part = {data, done};
      /* A reply the kernel refused still needs an answer, or the reader waits forever. */
      if (session_reply(s, unique, 0, &part, 1) != 0) session_reply(s, unique, EIO, NULL, 0);
      else {
        atomic_fetch_add(&s->fast_reads, 1);
        atomic_fetch_add(&s->fast_read_bytes, done);
      }
      served = 1;
    }
  }
  release_handle(s, h);
  return served;
}

static void forward(session *s, const char *buffer, size_t size) {
  const uint64_t unique = ((const struct fuse_in_header *)buffer)->unique;
  session_event *event = new_event(SESSION_EVENT_REQUEST);
  char *copy = malloc(size);
  if (!event || !copy) {
    free(event);
    free(copy);
    session_reply(s, unique, ENOMEM, NULL, 0);
    return;
  }
  memcpy(copy, buffer, size);
  event->data = copy;
  event->size = size;
  /* Nobody is left to answer (the process is shutting down): fail the request, not the reader. */
  if (!post(s, event)) session_reply(s, unique, EIO, NULL, 0);
}

/* Requests the kernel sends without waiting for a reply. */
static int expects_reply(uint32_t opcode) {
  return opcode != FUSE_FORGET && opcode != FUSE_BATCH_FORGET && opcode != FUSE_INTERRUPT;
}

/* Whether a request is as long as it says, and as long as the part of it read here. */
static int well_formed(const struct fuse_in_header *in, size_t size) {
  if (in->len != size) return 0;
  switch (in->opcode) {
    case FUSE_INIT:
      return size >= sizeof(*in) + offsetof(struct fuse_init_in, flags2);
    case FUSE_READ:
      return size >= sizeof(*in) + sizeof(struct fuse_read_in);
    default:
      return 1;
  }
}

static void *request_loop(void *arg) {
  session *s = arg;
  char *buffer = malloc(SESSION_BUFFER_SIZE);
  int error = buffer ? 0 : ENOMEM;
  while (buffer) {
    ssize_t n = read(s->fd, buffer, SESSION_BUFFER_SIZE);
    if (n < 0) {
      /* ENOENT: a request was interrupted before we read it. */
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      error = errno == ENODEV ? 0 : errno; /* ENODEV: the filesystem was unmounted */
      break;
    }
    if ((size_t)n < sizeof(struct fuse_in_header)) continue; /* not even a request id to answer */
    const struct fuse_in_header *in = (const struct fuse_in_header *)buffer;
    if (!well_formed(in, (size_t)n)) {
      if (expects_reply(in->opcode)) session_reply(s, in->unique, EIO, NULL, 0);
      continue;
    }
    switch (in->opcode) {
      case FUSE_INIT:
        answer_init(s, in, (const struct fuse_init_in *)(buffer + sizeof(*in)), (size_t)n - sizeof(*in));
        break;
      case FUSE_FORGET:
      case FUSE_BATCH_FORGET:
      case FUSE_INTERRUPT:
        /* No reply is due. Node ids map to paths for the whole mount (LOOKUP of "." finds one again
         * after a forget), so forgets change nothing. */
        break;
      case FUSE_DESTROY:
        session_reply(s, in->unique, 0, NULL, 0);
        break;
      case FUSE_READ:
        if (serve_staged_read(s, buffer)) break;
        forward(s, buffer, (size_t)n);
        break;
      default:
        forward(s, buffer, (size_t)n);
    }
  }
  free(buffer);
  if (atomic_fetch_sub(&s->live_threads, 1) == 1) {
    session_event *event = new_event(SESSION_EVENT_CLOSED);
    if (event) {
      event->error = error;
      post(s, event);
    }
  }
  session_release(s);
  return NULL;
}

int session_start(session *s) {
  atomic_store(&s->live_threads, s->thread_count);
  for (int i = 0; i < s->thread_count; i++) {
    atomic_fetch_add(&s->refs, 1); /* the thread's, released as it returns */
    int err = pthread_create(&s->threads[i], NULL, request_loop, s);
    if (err) {
      atomic_fetch_sub(&s->refs, 1);
      atomic_fetch_sub(&s->live_threads, s->thread_count - i);
      s->thread_count = i;
      return err;
    }
  }
  return 0;
}

void session_join(session *s) {
  for (int i = 0; i < s->thread_count; i++) pthread_join(s->threads[i], NULL);
  s->thread_count = 0;
}

int session_register_handle(session *s, uint64_t fh, int fd, const uint8_t *bitmap, size_t bitmap_bytes,
                            uint32_t block_size, uint64_t size, napi_ref bitmap_ref) {
  if (block_size == 0 || (uint64_t)bitmap_bytes * 8 * block_size < size) return EINVAL;
  fast_handle *h = calloc(1, sizeof(*h));
  if (!h) return ENOMEM;
  h->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (h->fd < 0) {
    int err = errno;
    free(h);
    return err;
  }
  h->fh = fh;
  h->bitmap = bitmap;
  h->bitmap_bytes = bitmap_bytes;
  h->block_size = block_size;
  h->size = size;
  h->bitmap_ref = bitmap_ref;
  pthread_mutex_lock(&s->lock);
  fast_handle **bucket = &s->handles[fh % SESSION_HANDLE_BUCKETS];
  fast_handle *existing = *bucket;
  while (existing && existing->fh != fh) existing = existing->next;
  if (!existing) {
    h->next = *bucket;
    *bucket = h;
  }
  pthread_mutex_unlock(&s->lock);
  if (existing) {
    /* A stale registration would serve this handle's reads from another file: refuse. */
    close(h->fd);
    free(h);
    return EEXIST;
  }
  return 0;
}

fast_handle *session_unregister_handle(session *s, uint64_t fh) {
  pthread_mutex_lock(&s->lock);
  fast_handle **link = &s->handles[fh % SESSION_HANDLE_BUCKETS];
  while (*link && (*link)->fh != fh) link = &(*link)->next;
  fast_handle *h = *link;
  if (h) {
    *link = h->next;
    while (h->readers > 0) pthread_cond_wait(&s->reader_done, &s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  return h;
}

fast_handle *session_take_all_handles(session *s) {
  fast_handle *all = NULL;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < SESSION_HANDLE_BUCKETS; i++) {
    while (s->handles[i]) {
      fast_handle *h = s->handles[i];
      s->handles[i] = h->next;
      h->next = all;
      all = h;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return all;
}
