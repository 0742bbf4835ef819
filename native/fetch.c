/* The fetch pool: see fetch.h. */
#define _GNU_SOURCE
#include "fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "crc32c.h"

/* libcurl's receive buffer, and the bytes gathered for one write (see write_context). */
#define FETCH_BUFFER_BYTES (256 * 1024)

int fetch_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : EIO; }

static void transfer_retain(fetch_transfer *t) { atomic_fetch_add(&t->refs, 1); }

void fetch_transfer_release(fetch_transfer *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1) return;
  if (t->fd >= 0) close(t->fd);
  curl_slist_free_all(t->headers);
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->judged);
  free(t->url);
  free(t->done_crcs);
  free(t->text);
  free(t);
}

void fetch_event_free(fetch_event *event) {
  if (!event) return;
  if (event->transfer) fetch_transfer_release(event->transfer);
  free(event->done_crcs);
  free(event->text);
  free(event);
}

fetch_transfer *fetch_transfer_new(uint64_t id, const char *url, const char *const *headers, size_t header_count, int fd,
                                   uint64_t start, uint64_t end, uint64_t block_size, uint32_t crc, uint64_t crc_filled) {
  fetch_transfer *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  atomic_init(&t->refs, 1);
  t->id = id;
  t->fd = fd;
  t->start = start;
  t->end = end;
  t->block_size = block_size;
  t->crc = crc;
  t->crc_filled = crc_filled;
  atomic_init(&t->written, start);
  atomic_init(&t->watch, 0);
  atomic_init(&t->cancelled, 0);
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->judged, NULL);
  t->url = strdup(url);
  struct curl_slist *list = NULL;
  int ok = t->url != NULL;
  for (size_t i = 0; ok && i < header_count; i++) {
    struct curl_slist *grown = curl_slist_append(list, headers[i]);
    if (!grown) ok = 0;
    else list = grown;
  }
  t->headers = list;
  if (!ok) {
    t->fd = -1; /* the caller keeps its descriptor when this fails */
    fetch_transfer_release(t);
    return NULL;
  }
  return t;
}

fetch_transfer *fetch_head_new(uint64_t id, const char *url, const char *const *headers, size_t header_count) {
  fetch_transfer *t = fetch_transfer_new(id, url, headers, header_count, -1, 0, 0, 1, 0, 0);
  if (t) t->head_only = 1;
  return t;
}

/* An event about `t` with the blocks completed since the last one; NULL when memory is short. */
static fetch_event *take_event(fetch_transfer *t, fetch_event_kind kind) {
  fetch_event *event = calloc(1, sizeof(*event));
  if (!event) return NULL;
  event->kind = kind;
  transfer_retain(t);
  event->transfer = t;
  event->written = atomic_load(&t->written);
  event->first_done = t->first_done;
  event->done_count = t->done_count;
  event->done_crcs = t->done_crcs;
  t->done_crcs = NULL;
  t->done_count = t->done_capacity = 0;
  return event;
}

static void post(fetch_transfer *t, fetch_event *event) {
  if (!event) return;
  if (t->pool->post(t->pool->post_context, event) != 0) fetch_event_free(event);
}

static void note_block_done(fetch_transfer *t, uint64_t block, uint32_t crc) {
  if (t->done_count == 0) t->first_done = block;
  if (t->done_count == t->done_capacity) {
    size_t capacity = t->done_capacity ? t->done_capacity * 2 : 8;
    uint32_t *grown = realloc(t->done_crcs, capacity * sizeof(uint32_t));
    if (!grown) return; /* the block is written; without its CRC JavaScript leaves it unstaged */
    t->done_crcs = grown;
    t->done_capacity = capacity;
  }
  t->done_crcs[t->done_count++] = crc;
}

static void copy_header_value(char *out, size_t size, const char *value, size_t length) {
  while (length && (value[length - 1] == '\r' || value[length - 1] == '\n' || value[length - 1] == ' ')) length--;
  while (length && *value == ' ') value++, length--;
  if (length >= size) length = size - 1;
  memcpy(out, value, length);
  out[length] = '\0';
}

/* Keeps a HEAD's header line; 0 when the head outgrew FETCH_MAX_HEAD. */
static int keep_head_line(fetch_transfer *t, const char *line, size_t length) {
  if (t->text_length + length > FETCH_MAX_HEAD) {
    t->outcome = FETCH_OVERRUN;
    return 0;
  }
  char *grown = realloc(t->text, t->text_length + length + 1);
  if (!grown) {
    t->outcome = FETCH_NETWORK;
    t->code = (int)CURLE_OUT_OF_MEMORY;
    return 0;
  }
  memcpy(grown + t->text_length, line, length);
  t->text_length += length;
  grown[t->text_length] = '\0';
  t->text = grown;
  return 1;
}

static size_t on_header(char *line, size_t size, size_t count, void *context) {
  fetch_transfer *t = context;
  size_t length = size * count;
  /* A status line starts a response's head afresh. */
  if (length >= 5 && strncmp(line, "HTTP/", 5) == 0) {
    memset(&t->head, 0, sizeof(t->head));
    t->text_length = 0;
    return length;
  }
  if (t->head_only && !keep_head_line(t, line, length)) return 0;
  const char *colon = memchr(line, ':', length);
  if (!colon) return length;
  size_t name = (size_t)(colon - line);
  const char *value = colon + 1;
  size_t value_length = length - name - 1;
  if (name == 13 && strncasecmp(line, "content-range", 13) == 0)
    copy_header_value(t->head.content_range, sizeof(t->head.content_range), value, value_length);
  else if (name == 14 && strncasecmp(line, "content-length", 14) == 0)
    copy_header_value(t->head.content_length, sizeof(t->head.content_length), value, value_length);
  else if (name == 4 && strncasecmp(line, "etag", 4) == 0)
    copy_header_value(t->head.etag, sizeof(t->head.etag), value, value_length);
  return length;
}

/* Posts the head and waits for JavaScript's verdict; 1 when the body may be written. */
static int judge_head(fetch_transfer *t, CURL *easy) {
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->head.status);
  t->head_judged = 1;
  if (t->head.status >= 300) return 1; /* an error answer: its body is kept as text, never written */
  fetch_event *event = take_event(t, FETCH_EVENT_HEAD);
  if (!event) return 0;
  post(t, event);
  pthread_mutex_lock(&t->lock);
  while (t->verdict == 0 && !atomic_load(&t->cancelled)) pthread_cond_wait(&t->judged, &t->lock);
  int accepted = t->verdict > 0 && !atomic_load(&t->cancelled);
  pthread_mutex_unlock(&t->lock);
  if (!accepted && t->outcome == FETCH_OK) t->outcome = atomic_load(&t->cancelled) ? FETCH_CANCELLED : FETCH_REFUSED;
  return accepted;
}

static int write_all(int fd, const char *data, size_t length, uint64_t offset) {
  while (length) {
    ssize_t done = pwrite(fd, data, length, (off_t)offset);
    if (done < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (done == 0) return EIO;
    data += done;
    length -= (size_t)done;
    offset += (uint64_t)done;
  }
  return 0;
}

/*
 * One transfer's body on its way to disk. libcurl hands the body over in pieces of 16 KiB
 * whatever its buffer size; they are gathered here and written FETCH_BUFFER_BYTES at a time:
 * a write that size costs the kernel a fraction of the CPU of sixteen small ones (larger page
 * cache folios, fewer syscalls). Held bytes never cross a block's end, so each write completes
 * at most one block, whose CRC then covers exactly the bytes on disk.
 */
typedef struct write_context {
  fetch_transfer *t;
  CURL *easy;
  char *held; /* FETCH_BUFFER_BYTES */
  size_t held_length;
} write_context;

/* Writes the held bytes at `written`; 0 when that failed (the transfer then stops). */
static int write_held(write_context *w) {
  fetch_transfer *t = w->t;
  if (!w->held_length) return 1;
  uint64_t written = atomic_load(&t->written);
  int err = write_all(t->fd, w->held, w->held_length, written);
  if (err) {
    t->outcome = FETCH_WRITE;
    t->code = err;
    return 0;
  }
  t->crc = crc32c(t->crc, w->held, w->held_length);
  t->crc_filled += w->held_length;
  written += w->held_length;
  w->held_length = 0;
  atomic_store(&t->written, written);
  uint64_t block = (written - 1) / t->block_size;
  uint64_t block_end = (block + 1) * t->block_size;
  if (written == block_end || written == t->end) {
    note_block_done(t, block, t->crc);
    t->crc = 0;
    t->crc_filled = 0;
  }
  return 1;
}

/*
 * Writes held bytes a reader waits for at once, and posts progress when blocks were completed or
 * the bytes a reader waits for are on disk. 0 when a write failed.
 */
static int tell_progress(write_context *w) {
  fetch_transfer *t = w->t;
  uint64_t written = atomic_load(&t->written);
  uint64_t watch = atomic_load(&t->watch);
  if (watch > written && watch <= written + w->held_length) {
    if (!write_held(w)) return 0;
    written = atomic_load(&t->written);
  }
  int wanted = watch && written >= watch;
  if (wanted) atomic_compare_exchange_strong(&t->watch, &watch, 0);
  if ((t->done_count || wanted) && written < t->end) post(t, take_event(t, FETCH_EVENT_PROGRESS));
  return 1;
}

static size_t on_body(char *data, size_t size, size_t count, void *context) {
  write_context *w = context;
  fetch_transfer *t = w->t;
  size_t length = size * count;
  if (atomic_load(&t->cancelled)) {
    t->outcome = FETCH_CANCELLED;
    return 0;
  }
  if (!t->head_judged && !judge_head(t, w->easy)) return 0;
  if (t->head.status >= 300) {
    size_t room = FETCH_MAX_ERROR_BODY - t->text_length;
    size_t take = length < room ? length : room;
    if (take) {
      char *grown = realloc(t->text, t->text_length + take + 1);
      if (grown) {
        memcpy(grown + t->text_length, data, take);
        t->text_length += take;
        grown[t->text_length] = '\0';
        t->text = grown;
      }
    }
    return length;
  }
  if (atomic_load(&t->written) + w->held_length + length > t->end) {
    t->outcome = FETCH_OVERRUN; /* more bytes than asked are never data */
    return 0;
  }
  size_t offset = 0;
  while (offset < length) {
    uint64_t at = atomic_load(&t->written) + w->held_length;
    uint64_t block_end = (at / t->block_size + 1) * t->block_size;
    if (block_end > t->end) block_end = t->end;
    size_t take = length - offset;
    if (take > FETCH_BUFFER_BYTES - w->held_length) take = FETCH_BUFFER_BYTES - w->held_length;
    if (take > block_end - at) take = (size_t)(block_end - at);
    memcpy(w->held + w->held_length, data + offset, take);
    w->held_length += take;
    offset += take;
    if ((w->held_length == FETCH_BUFFER_BYTES || at + take == block_end) && !write_held(w)) return 0;
  }
  return tell_progress(w) ? length : 0;
}

/* Also called while the body stalls: a reader that started waiting for held bytes gets them. */
static int on_progress(void *context, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  write_context *w = context;
  if (atomic_load(&w->t->cancelled)) return 1;
  return w->t->head_judged && w->t->head.status < 300 && !tell_progress(w) ? 1 : 0;
}

static void run_transfer(fetch_pool *pool, CURL *easy, char *held, char *error, fetch_transfer *t) {
  write_context w = {t, easy, held, 0};
  curl_easy_reset(easy);
  error[0] = '\0';
  curl_easy_setopt(easy, CURLOPT_URL, t->url);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, (struct curl_slist *)t->headers);
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, (long)FETCH_BUFFER_BYTES);
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, pool->options.connect_timeout_ms);
  /* Idle time, not total time: a long GET that keeps streaming is never cut. */
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (pool->options.idle_timeout_ms + 999) / 1000);
  /* As the rest of stagefs: no proxy from the environment, no redirects followed. */
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  if (pool->ca_file) curl_easy_setopt(easy, CURLOPT_CAINFO, pool->ca_file);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &w);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &w);
  if (t->head_only) curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  CURLcode result = curl_easy_perform(easy);
  /* Bytes of an accepted body are data even when the connection broke after them. */
  if (t->outcome == FETCH_OK && !atomic_load(&t->cancelled)) write_held(&w);
  /* An empty body never reached on_body: the head is taken here, for JavaScript to judge in DONE. */
  if (!t->head_judged) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->head.status);
  if (t->outcome != FETCH_OK) {
    /* set by a callback */
  } else if (atomic_load(&t->cancelled)) {
    t->outcome = FETCH_CANCELLED;
  } else if (result != CURLE_OK) {
    t->outcome = FETCH_NETWORK;
    t->code = (int)result;
    free(t->text);
    t->text = strdup(error[0] ? error : curl_easy_strerror(result));
  } else if (t->head.status >= 300) {
    t->outcome = FETCH_HTTP;
  } else if (atomic_load(&t->written) < t->end) {
    t->outcome = FETCH_SHORT;
  }
}

static void finish(fetch_transfer *t) {
  /* The file is done with now: its handle in JavaScript may live on until a collection. */
  if (t->fd >= 0) close(t->fd);
  t->fd = -1;
  fetch_event *event = take_event(t, FETCH_EVENT_DONE);
  if (event) {
    event->outcome = t->outcome;
    event->code = t->code;
    event->text = t->text;
    t->text = NULL;
    event->crc = t->crc;
    event->crc_filled = t->crc_filled;
    post(t, event);
  }
  fetch_transfer_release(t); /* the pool's reference */
}

static void *pool_thread(void *arg) {
  fetch_pool *pool = arg;
  CURL *easy = curl_easy_init();
  char *held = malloc(FETCH_BUFFER_BYTES);
  char error[CURL_ERROR_SIZE];
  pthread_mutex_lock(&pool->lock);
  int slot = 0;
  while (!pthread_equal(pool->threads[slot], pthread_self())) slot++;
  for (;;) {
    while (!pool->queue_head && !pool->stopping) {
      pool->idle[pool->idle_count++] = slot;
      pool->woken[slot] = 0;
      /* fetch_start takes this thread off the idle stack when it wakes it */
      while (!pool->woken[slot] && !pool->stopping) pthread_cond_wait(&pool->wake[slot], &pool->lock);
    }
    fetch_transfer *t = pool->queue_head;
    if (!t) break;
    pool->queue_head = t->next;
    if (!pool->queue_head) pool->queue_tail = NULL;
    pool->running[slot] = t;
    int stopping = pool->stopping;
    pthread_mutex_unlock(&pool->lock);
    if (stopping || !easy || !held) {
      t->outcome = stopping ? FETCH_CANCELLED : FETCH_NETWORK;
      t->code = stopping ? 0 : (int)CURLE_FAILED_INIT;
    } else {
      run_transfer(pool, easy, held, error, t);
    }
    pthread_mutex_lock(&pool->lock);
    pool->running[slot] = NULL;
    pthread_mutex_unlock(&pool->lock);
    finish(t);
    pthread_mutex_lock(&pool->lock);
  }
  pthread_mutex_unlock(&pool->lock);
  if (easy) curl_easy_cleanup(easy);
  free(held);
  return NULL;
}

fetch_pool *fetch_pool_open(const fetch_options *options, fetch_post_fn post_fn, void *post_context) {
  fetch_pool *pool = calloc(1, sizeof(*pool));
  if (!pool) {
    errno = ENOMEM;
    return NULL;
  }
  pool->options = *options;
  if (options->ca_file) {
    pool->ca_file = strdup(options->ca_file);
    pool->options.ca_file = pool->ca_file;
  }
  pool->post = post_fn;
  pool->post_context = post_context;
  pthread_mutex_init(&pool->lock, NULL);
  for (int i = 0; i < FETCH_MAX_THREADS; i++) pthread_cond_init(&pool->wake[i], NULL);
  int threads = options->threads < 1 ? 1 : options->threads > FETCH_MAX_THREADS ? FETCH_MAX_THREADS : options->threads;
  /* Threads look themselves up in `threads` under the lock: hold it while they are made. */
  pthread_mutex_lock(&pool->lock);
  for (int i = 0; i < threads; i++) {
    int err = pthread_create(&pool->threads[i], NULL, pool_thread, pool);
    if (err) {
      pthread_mutex_unlock(&pool->lock);
      fetch_pool_close(pool);
      errno = err;
      return NULL;
    }
    pool->thread_count = i + 1;
  }
  pthread_mutex_unlock(&pool->lock);
  return pool;
}

void fetch_pool_close(fetch_pool *pool) {
  pthread_mutex_lock(&pool->lock);
  pool->stopping = 1;
  for (fetch_transfer *t = pool->queue_head; t; t = t->next) fetch_cancel(t);
  for (int i = 0; i < pool->thread_count; i++)
    if (pool->running[i]) fetch_cancel(pool->running[i]);
  for (int i = 0; i < pool->thread_count; i++) pthread_cond_signal(&pool->wake[i]);
  pthread_mutex_unlock(&pool->lock);
  for (int i = 0; i < pool->thread_count; i++) pthread_join(pool->threads[i], NULL);
  pthread_mutex_destroy(&pool->lock);
  for (int i = 0; i < FETCH_MAX_THREADS; i++) pthread_cond_destroy(&pool->wake[i]);
  free(pool->ca_file);
  free(pool);
}

int fetch_start(fetch_pool *pool, fetch_transfer *t) {
  pthread_mutex_lock(&pool->lock);
  if (pool->stopping) {
    pthread_mutex_unlock(&pool->lock);
    return ESHUTDOWN;
  }
  t->pool = pool;
  transfer_retain(t); /* the pool's, released in finish */
  t->next = NULL;
  if (pool->queue_tail) pool->queue_tail->next = t;
  else pool->queue_head = t;
  pool->queue_tail = t;
  if (pool->idle_count) {
    int slot = pool->idle[--pool->idle_count];
    pool->woken[slot] = 1;
    pthread_cond_signal(&pool->wake[slot]);
  }
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

void fetch_verdict(fetch_transfer *t, int accept) {
  pthread_mutex_lock(&t->lock);
  if (t->verdict == 0) t->verdict = accept ? 1 : -1;
  pthread_cond_broadcast(&t->judged);
  pthread_mutex_unlock(&t->lock);
}

uint64_t fetch_watch(fetch_transfer *t, uint64_t offset) {
  atomic_store(&t->watch, offset);
  /* Read after the store: bytes written past `offset` meanwhile are either seen here or posted. */
  return atomic_load(&t->written);
}

void fetch_cancel(fetch_transfer *t) {
  atomic_store(&t->cancelled, 1);
  pthread_mutex_lock(&t->lock);
  pthread_cond_broadcast(&t->judged);
  pthread_mutex_unlock(&t->lock);
}
