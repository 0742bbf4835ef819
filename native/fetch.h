/*
 * Ranged GETs whose bodies go straight into staging files: libcurl transfers on a pool of
 * threads, each body written with pwrite as it arrives and each block's CRC32C computed on the
 * way, so the JavaScript thread neither parses HTTP nor touches the bytes. JavaScript signs each
 * request, judges each response's head before a body byte is written, and decides retries; the
 * pool only moves bytes and reports what it did.
 *
 * Lifetime: a transfer is reference counted. Its creator holds one (the addon hands it to
 * JavaScript's handle), the pool holds one from fetch_start until the DONE event is made, and
 * every event holds one until it is freed.
 *
 * Dispatch: a queued transfer wakes the thread that went idle last. Each thread keeps its own
 * keep-alive connection (libcurl cannot share one between threads), so a few transfers at a
 * time reuse a few warm connections instead of each waking the longest-idle thread and
 * connecting anew.
 *
 * Locks: `pool->lock` guards the queue, the idle stack, `running` and `stopping`; `transfer->lock` guards the
 * verdict. Closing the pool takes transfer locks under the pool's (to cancel); nothing takes
 * them the other way round. `written` and `watch` are atomics: JavaScript reads and sets them while
 * the transfer runs.
 */
#ifndef STAGEFS_FETCH_H
#define STAGEFS_FETCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FETCH_MAX_THREADS 64
#define FETCH_MAX_ERROR_BODY (64 * 1024)
/* A HEAD's response head is kept whole up to this; S3 allows 2 KiB of user metadata. */
#define FETCH_MAX_HEAD (64 * 1024)

typedef enum {
  FETCH_EVENT_HEAD = 1,     /* the response's head: JavaScript answers with fetch_verdict */
  FETCH_EVENT_PROGRESS = 2, /* bytes on disk up to `written`; blocks completed since the last event */
  FETCH_EVENT_DONE = 3,     /* the transfer is over: how, and where it stopped */
} fetch_event_kind;

typedef enum {
  FETCH_OK = 0,
  FETCH_HTTP = 1,      /* an error status; `text` holds the start of its body */
  FETCH_NETWORK = 2,   /* libcurl failed (`code` is its CURLcode, `text` its message) */
  FETCH_WRITE = 3,     /* writing the staging file failed (`code` is the errno) */
  FETCH_REFUSED = 4,   /* JavaScript refused the head */
  FETCH_CANCELLED = 5, /* fetch_cancel, or the pool closed */
  FETCH_SHORT = 6,     /* the body ended before `end` */
  FETCH_OVERRUN = 7,   /* the body went on past `end`, or a HEAD's head past FETCH_MAX_HEAD */
} fetch_outcome;

typedef struct fetch_head {
  long status;
  char content_range[128];
  char content_length[32];
  char etag[256];
} fetch_head;

struct fetch_pool;

typedef struct fetch_transfer {
  atomic_int refs;
  struct fetch_pool *pool;
  uint64_t id;
  char *url;
  void *headers; /* struct curl_slist * */
  /* A HEAD: no body, no file; its response head is kept whole in `text` for DONE. */
  int head_only;
  int fd; /* ours, closed once the transfer is over; -1 for a HEAD */
  uint64_t start, end, block_size;
  /* The CRC of the block holding `written`, over its bytes before `written`. */
  uint32_t crc;
  uint64_t crc_filled;
  /* Bytes before this offset are on disk; set by the transfer's thread only. */
  atomic_uint_fast64_t written;
  /* A PROGRESS event is wanted once `written` reaches this (0: none). */
  atomic_uint_fast64_t watch;
  atomic_int cancelled;
  /* Blocks completed since the last event: CRCs of blocks first_done, first_done + 1, ... */
  uint32_t *done_crcs;
  size_t done_count, done_capacity;
  uint64_t first_done;
  fetch_head head;
  int head_judged;
  pthread_mutex_t lock;
  pthread_cond_t judged;
  int verdict; /* under lock: 0 awaited, 1 accepted, -1 refused */
  fetch_outcome outcome;
  int code;
  /* An error answer's body, libcurl's message, or a HEAD's response head ("Name: value\r\n" lines). */
  char *text;
  size_t text_length;
  struct fetch_transfer *next;
} fetch_transfer;

typedef struct fetch_event {
  fetch_event_kind kind;
  fetch_transfer *transfer; /* holds a reference */
  uint64_t written;
  uint64_t first_done;
  uint32_t *done_crcs; /* ours */
  size_t done_count;
  /* DONE only */
  fetch_outcome outcome;
  int code;
  char *text; /* ours */
  uint32_t crc;
  uint64_t crc_filled;
} fetch_event;

/* Hands an event to JavaScript; returns 0, or nonzero when it cannot (the event is then freed by the pool). */
typedef int (*fetch_post_fn)(void *context, fetch_event *event);

typedef struct fetch_options {
  int threads;
  long connect_timeout_ms;
  long idle_timeout_ms;
  const char *ca_file; /* NULL: the system's CAs */
} fetch_options;

typedef struct fetch_pool {
  fetch_options options;
  char *ca_file;
  fetch_post_fn post;
  void *post_context;
  pthread_t threads[FETCH_MAX_THREADS];
  int thread_count;
  pthread_mutex_t lock;
  fetch_transfer *queue_head, *queue_tail;
  /* Threads waiting for work, by slot, the one idle the shortest last; each waits on its own `wake`. */
  int idle[FETCH_MAX_THREADS];
  int idle_count;
  int woken[FETCH_MAX_THREADS];
  pthread_cond_t wake[FETCH_MAX_THREADS];
  int stopping;
  /* Transfers running on a thread (cancelled at close), under lock. */
  fetch_transfer *running[FETCH_MAX_THREADS];
} fetch_pool;

/* Once per process, before any pool. 0 or an error. */
int fetch_global_init(void);

/* Starts a pool's threads; NULL with errno set on failure. */
fetch_pool *fetch_pool_open(const fetch_options *options, fetch_post_fn post, void *post_context);

/* Cancels every transfer, waits for the threads, frees the pool. Events already posted stay valid. */
void fetch_pool_close(fetch_pool *pool);

/*
 * A transfer of [start, end) of `url` into `fd` at the same offsets (start on a block boundary,
 * or resuming a block with its CRC so far); `headers` are "Name: value" lines. Holds the
 * creator's reference. NULL on allocation failure.
 */
fetch_transfer *fetch_transfer_new(uint64_t id, const char *url, const char *const *headers, size_t header_count, int fd,
                                   uint64_t start, uint64_t end, uint64_t block_size, uint32_t crc, uint64_t crc_filled);

/* A HEAD of `url`: its DONE event carries the response's header lines in `text`. NULL on allocation failure. */
fetch_transfer *fetch_head_new(uint64_t id, const char *url, const char *const *headers, size_t header_count);

/* Queues a transfer to run; 0, or ESHUTDOWN once the pool is closing. */
int fetch_start(fetch_pool *pool, fetch_transfer *transfer);

/* JavaScript's judgement of the head (accept: the body may be written). */
void fetch_verdict(fetch_transfer *transfer, int accept);

/* Asks for a PROGRESS event once `offset` is written; returns the bytes written so far. */
uint64_t fetch_watch(fetch_transfer *transfer, uint64_t offset);

void fetch_cancel(fetch_transfer *transfer);

void fetch_transfer_release(fetch_transfer *transfer);

void fetch_event_free(fetch_event *event);

#endif
