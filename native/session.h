/*
 * A FUSE session on /dev/fuse: request threads, INIT negotiation, replies, and the fast path
 * that serves reads of staged ranges with pread, without a trip into JavaScript.
 *
 * Lifetime: a session is reference counted. Its creator holds one reference (the addon hands
 * it to JavaScript's handle on the session), the event channel holds one, and every request
 * thread holds one until it returns; the last release frees it. So a request thread never
 * outlives the memory it uses, even when the process tears down the event channel first.
 *
 * Locks (never held together): `lock` guards the handle table and readers counts;
 * `events_lock` guards `events_open` and every post to `events`, so nothing is posted to a
 * channel that has been finalized.
 */
#ifndef STAGEFS_SESSION_H
#define STAGEFS_SESSION_H

#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#define SESSION_MAX_THREADS 16
#define SESSION_HANDLE_BUCKETS 1024
/* Largest request the kernel may send: 256 pages of data plus headers. */
#define SESSION_MAX_PAGES 256
#define SESSION_BUFFER_SIZE ((SESSION_MAX_PAGES + 16) * 4096)

/* What a read-only open file needs for reads served in C. */
typedef struct fast_handle {
  uint64_t fh;
  int fd;                 /* a dup of the staging file's descriptor, ours to close */
  const uint8_t *bitmap;  /* staged-block bits, owned by JavaScript; bits only ever get set */
  size_t bitmap_bytes;
  uint32_t block_size;
  uint64_t size;
  napi_ref bitmap_ref;    /* keeps the bits alive; touched only on the JavaScript thread */
  int readers;            /* fast-path reads in progress */
  struct fast_handle *next;
} fast_handle;

typedef enum {
  SESSION_EVENT_REQUEST = 1, /* a request for JavaScript: header and body */
  SESSION_EVENT_HIT = 2,     /* a read the fast path served */
  SESSION_EVENT_INIT = 3,    /* INIT answered: what was negotiated */
  SESSION_EVENT_CLOSED = 4,  /* every request thread has stopped */
} session_event_kind;

typedef struct session_event {
  session_event_kind kind;
  char *data;
  size_t size;
  uint64_t fh;
  uint64_t offset;
  uint64_t length;
  int error;
} session_event;

typedef struct session {
  int fd;
  int thread_count;
  pthread_t threads[SESSION_MAX_THREADS];
  napi_threadsafe_function events;
  pthread_mutex_t events_lock;
  int events_open;        /* under events_lock: `events` may still be posted to */
  pthread_mutex_t lock;
  pthread_cond_t reader_done;
  fast_handle *handles[SESSION_HANDLE_BUCKETS];
  atomic_int refs;
  atomic_int live_threads;
  /* Reads the fast path answered, and their bytes; read by JavaScript for metrics. */
  atomic_uint_fast64_t fast_reads;
  atomic_uint_fast64_t fast_read_bytes;
  int want_passthrough;
  /* Negotiated at INIT. */
  uint32_t proto_minor;
  int passthrough;
  uint32_t max_write;
  uint32_t max_readahead;
} session;

/* Prepares a zeroed session (fd, thread_count, want_passthrough set) holding one reference, the caller's. */
void session_init(session *s);

/* Drops a reference; the last one frees the session and any handle still registered. */
void session_release(session *s);

/* Lets events be posted to `events`; until then, and after session_close_events, none is. */
void session_open_events(session *s, napi_threadsafe_function events);

/* No event is posted from now on: requests that would need JavaScript fail with EIO. */
void session_close_events(session *s);

/* Starts `thread_count` request threads on an open, mounted /dev/fuse descriptor. */
int session_start(session *s);

/* Joins the request threads once they have stopped (after unmount). */
void session_join(session *s);

/* Writes one reply; `error` is a positive errno or 0. Returns 0 or a positive errno. */
int session_reply(session *s, uint64_t unique, int error, const struct iovec *parts, int part_count);

/* Registers a read-only handle for the fast path; EEXIST when `fh` is registered already. */
int session_register_handle(session *s, uint64_t fh, int fd, const uint8_t *bitmap, size_t bitmap_bytes,
                            uint32_t block_size, uint64_t size, napi_ref bitmap_ref);

/* Removes a handle once no fast-path read uses it; the caller frees what it returns. */
fast_handle *session_unregister_handle(session *s, uint64_t fh);

/* Drops every registered handle at shutdown; the caller frees them. */
fast_handle *session_take_all_handles(session *s);

#endif
