/*
 * The fetch pool (fetch.h) for JavaScript:
 *   fetchOpen({ threads, connectTimeoutMs, idleTimeoutMs, caFile? }, onEvent) -> pool
 *   fetchStart(pool, { id, url, headers: string[], fd, start, end, blockSize, crc, crcFilled }) -> transfer
 *   fetchHead(pool, { id, url, headers: string[] }) -> transfer (DONE only; its text is the response's head)
 *   fetchVerdict(transfer, accept), fetchWatch(transfer, offset) -> written, fetchCancel(transfer)
 *   fetchClose(pool)
 * onEvent gets one object per event: { kind, id, written, firstDone, crcs?, and for HEAD and
 * DONE the head (status, contentRange, contentLength, etag), for DONE outcome, code, text, crc,
 * crcFilled }. A HEAD's head is given as latin1, as Node's HTTP parser reads header bytes.
 */
#define _GNU_SOURCE
#include "fetch_addon.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fetch.h"
#include "js_values.h"

#define MAX_HEADERS 32
#define MAX_URL 16384
#define MAX_HEADER_LINE 8192

typedef struct js_pool {
  fetch_pool *pool; /* NULL once closed */
  napi_threadsafe_function events;
  /* Transfers started whose DONE JavaScript has not had: while any, the pool keeps the process alive. */
  int active;
  /* The JavaScript handle's and the event channel's (its last queued event may come after the handle is gone). */
  int refs;
  /* Whether close_at_exit is registered: a pool still open when the environment is torn down is closed by it. */
  bool hooked;
} js_pool;

/* Both on the JavaScript thread. */
static void js_pool_release(js_pool *p) {
  if (--p->refs == 0) free(p);
}

static void finalize_events(napi_env env, void *data, void *hint) { js_pool_release(data); }

static int post_event(void *context, fetch_event *event) {
  js_pool *p = context;
  return napi_call_threadsafe_function(p->events, event, napi_tsfn_nonblocking) == napi_ok ? 0 : 1;
}

static bool set_number(napi_env env, napi_value object, const char *name, double value) {
  napi_value v;
  return napi_create_double(env, value, &v) == napi_ok && napi_set_named_property(env, object, name, v) == napi_ok;
}

static bool set_string(napi_env env, napi_value object, const char *name, const char *value) {
  napi_value v;
  return napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v) == napi_ok &&
         napi_set_named_property(env, object, name, v) == napi_ok;
}

static bool event_object(napi_env env, fetch_event *event, napi_value *out) {
  fetch_transfer *t = event->transfer;
  napi_value object;
  if (napi_create_object(env, &object) != napi_ok || !set_number(env, object, "kind", event->kind) ||
      !set_number(env, object, "id", (double)t->id) || !set_number(env, object, "written", (double)event->written) ||
      !set_number(env, object, "firstDone", (double)event->first_done))
    return false;
  if (event->done_count) {
    void *data;
    napi_value buffer, crcs;
    if (napi_create_arraybuffer(env, event->done_count * sizeof(uint32_t), &data, &buffer) != napi_ok) return false;
    memcpy(data, event->done_crcs, event->done_count * sizeof(uint32_t));
    if (napi_create_typedarray(env, napi_uint32_array, event->done_count, buffer, 0, &crcs) != napi_ok ||
        napi_set_named_property(env, object, "crcs", crcs) != napi_ok)
      return false;
  }
  if (event->kind != FETCH_EVENT_PROGRESS) {
    /* The head is settled: its thread waits for the verdict, or the transfer is over. */
    if (!set_number(env, object, "status", (double)t->head.status) ||
        !set_string(env, object, "contentRange", t->head.content_range) ||
        !set_string(env, object, "contentLength", t->head.content_length) || !set_string(env, object, "etag", t->head.etag))
      return false;
  }
  if (event->kind == FETCH_EVENT_DONE) {
    napi_value text;
    napi_status made = t->head_only && event->outcome != FETCH_NETWORK
                           ? napi_create_string_latin1(env, event->text ? event->text : "", NAPI_AUTO_LENGTH, &text)
                           : napi_create_string_utf8(env, event->text ? event->text : "", NAPI_AUTO_LENGTH, &text);
    if (made != napi_ok || napi_set_named_property(env, object, "text", text) != napi_ok ||
        !set_number(env, object, "outcome", event->outcome) || !set_number(env, object, "code", event->code) ||
        !set_number(env, object, "crc", event->crc) ||
        !set_number(env, object, "crcFilled", (double)event->crc_filled))
      return false;
  }
  *out = object;
  return true;
}

static void call_js(napi_env env, napi_value callback, void *context, void *data) {
  js_pool *p = context;
  fetch_event *event = data;
  if (env != NULL && event->kind == FETCH_EVENT_DONE && --p->active == 0) napi_unref_threadsafe_function(env, p->events);
  if (env != NULL) {
    napi_value argv[1], undefined;
    if (napi_get_undefined(env, &undefined) != napi_ok || !event_object(env, event, &argv[0]) ||
        napi_call_function(env, undefined, callback, 1, argv, NULL) != napi_ok) {
      /* The transfer's waiters would hang on a lost HEAD: refuse it, so DONE follows. */
      if (event->kind == FETCH_EVENT_HEAD) fetch_verdict(event->transfer, 0);
      bool pending = false;
      napi_value exception;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &exception);
      fprintf(stderr, "stagefs native: a fetch event could not be handled\n");
    }
  }
  fetch_event_free(event);
}

/*
 * A process that exits with a pool open (a command that never closed its store) tears its
 * environment down: the event channel is deleted there, and the pool's finalizer, run after,
 * would release it again and abort. Environment cleanup hooks run last-registered first, so this
 * one, registered after the channel was made, closes the pool while the channel still exists.
 */
static void close_at_exit(void *arg);

/*
 * Closes the pool (joins its threads) and releases the event channel. `env` is NULL in
 * close_at_exit, where the hook is unregistered by its caller.
 */
static void close_pool(napi_env env, js_pool *p) {
  if (env && p->hooked) napi_remove_env_cleanup_hook(env, close_at_exit, p);
  p->hooked = false;
  if (!p->pool) return;
  fetch_pool_close(p->pool);
  p->pool = NULL;
  napi_release_threadsafe_function(p->events, napi_tsfn_release);
}

static void close_at_exit(void *arg) { close_pool(NULL, arg); }

static void finalize_pool(napi_env env, void *data, void *hint) {
  js_pool *p = data;
  close_pool(env, p);
  js_pool_release(p);
}

static void finalize_transfer(napi_env env, void *data, void *hint) { fetch_transfer_release(data); }

static js_pool *get_pool(napi_env env, napi_value value) {
  js_pool *p = NULL;
  if (napi_get_value_external(env, value, (void **)&p) != napi_ok || !p || !p->pool) {
    napi_throw_error(env, NULL, "stagefs native: not an open fetch pool");
    return NULL;
  }
  return p;
}

static fetch_transfer *get_transfer(napi_env env, napi_value value) {
  fetch_transfer *t = NULL;
  if (napi_get_value_external(env, value, (void **)&t) != napi_ok || !t) {
    napi_throw_error(env, NULL, "stagefs native: not a fetch transfer");
    return NULL;
  }
  return t;
}

static napi_value js_fetch_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], name, result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "fetchOpen: options and a callback are required");
    return NULL;
  }
  char ca_file[4096];
  fetch_options options = {
      .threads = (int)get_int(env, argv[0], "threads", 8),
      .connect_timeout_ms = (long)get_int(env, argv[0], "connectTimeoutMs", 5000),
      .idle_timeout_ms = (long)get_int(env, argv[0], "idleTimeoutMs", 30000),
      .ca_file = get_string(env, argv[0], "caFile", ca_file, sizeof(ca_file)) ? ca_file : NULL,
  };
  js_pool *p = calloc(1, sizeof(*p));
  if (!p) return throw_errno(env, ENOMEM, "fetchOpen: out of memory");
  if (napi_create_string_utf8(env, "stagefs-fetch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, p, finalize_events, p, call_js, &p->events) != napi_ok) {
    free(p);
    napi_throw_error(env, NULL, "fetchOpen: cannot create the event channel");
    return NULL;
  }
  p->refs = 2;
  /* An idle pool does not keep the process alive; a transfer under way does. */
  napi_unref_threadsafe_function(env, p->events);
  p->pool = fetch_pool_open(&options, post_event, p);
  if (!p->pool) {
    int err = errno;
    napi_release_threadsafe_function(p->events, napi_tsfn_release);
    js_pool_release(p);
    return throw_errno(env, err, "fetchOpen: cannot start fetch threads");
  }
  p->hooked = napi_add_env_cleanup_hook(env, close_at_exit, p) == napi_ok;
  if (napi_create_external(env, p, finalize_pool, NULL, &result) != napi_ok) {
    close_pool(env, p);
    js_pool_release(p);
    napi_throw_error(env, NULL, "fetchOpen: cannot create the pool handle");
    return NULL;
  }
  return result;
}

/*
 * A request's url and header lines, copied from `spec` at their own sizes: buffers of the
 * largest allowed size cost an mmap and its page faults on every request.
 */
typedef struct js_request {
  char *url;
  char *headers[MAX_HEADERS];
  uint32_t count;
} js_request;

/* A copy of the string `value` if it is one of 1 to `max` - 1 bytes; NULL otherwise. */
static char *copy_string(napi_env env, napi_value value, size_t max) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok || length == 0 || length >= max - 1) return NULL;
  char *copy = malloc(length + 1);
  if (copy && napi_get_value_string_utf8(env, value, copy, length + 1, &length) != napi_ok) {
    free(copy);
    return NULL;
  }
  return copy;
}

static bool read_request(napi_env env, napi_value spec, js_request *request) {
  napi_value url, list;
  uint32_t count = 0;
  memset(request, 0, sizeof(*request));
  if (napi_get_named_property(env, spec, "url", &url) != napi_ok || !(request->url = copy_string(env, url, MAX_URL)) ||
      napi_get_named_property(env, spec, "headers", &list) != napi_ok || napi_get_array_length(env, list, &count) != napi_ok ||
      count > MAX_HEADERS)
    return false;
  for (; request->count < count; request->count++) {
    napi_value line;
    if (napi_get_element(env, list, request->count, &line) != napi_ok) return false;
    if (!(request->headers[request->count] = copy_string(env, line, MAX_HEADER_LINE))) return false;
  }
  return true;
}

static void free_request(js_request *request) {
  free(request->url);
  for (uint32_t i = 0; i < request->count; i++) free(request->headers[i]);
}

/* Hands `t` to the pool and JavaScript a handle on it; NULL (an exception pending) when that fails. */
static napi_value start_transfer(napi_env env, js_pool *p, fetch_transfer *t) {
  napi_value result;
  if (napi_create_external(env, t, finalize_transfer, NULL, &result) != napi_ok) {
    fetch_transfer_release(t);
    napi_throw_error(env, NULL, "fetchStart: cannot create the transfer handle");
    return NULL;
  }
  int err = fetch_start(p->pool, t);
  if (err) return throw_errno(env, err, "fetchStart: the pool is closing");
  if (p->active++ == 0) napi_ref_threadsafe_function(env, p->events);
  return result;
}

/* The pool and the request of a fetchStart or fetchHead call; NULL (an exception pending, nothing held) when they are not. */
static js_pool *pool_and_request(napi_env env, napi_callback_info info, const char *usage, napi_value *spec, js_request *request) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  js_pool *p = argc >= 2 ? get_pool(env, argv[0]) : NULL;
  if (!p) return NULL;
  if (!read_request(env, argv[1], request)) {
    free_request(request);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  *spec = argv[1];
  return p;
}

static napi_value js_fetch_start(napi_env env, napi_callback_info info) {
  static const char usage[] = "fetchStart: url, headers, fd and a range that starts where its CRC ends are required";
  napi_value spec;
  js_request request;
  js_pool *p = pool_and_request(env, info, usage, &spec, &request);
  if (!p) return NULL;
  int64_t fd = get_int(env, spec, "fd", -1), start = get_int(env, spec, "start", -1), end = get_int(env, spec, "end", -1),
          block_size = get_int(env, spec, "blockSize", 0), crc = get_int(env, spec, "crc", 0),
          crc_filled = get_int(env, spec, "crcFilled", 0);
  if (!(fd >= 0 && start >= 0 && end > start && block_size > 0 && crc >= 0 && crc <= UINT32_MAX && crc_filled >= 0 &&
        (uint64_t)crc_filled == (uint64_t)start % (uint64_t)block_size)) {
    free_request(&request);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  int own_fd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
  fetch_transfer *t = own_fd < 0 ? NULL
                                 : fetch_transfer_new((uint64_t)get_int(env, spec, "id", 0), request.url,
                                                      (const char *const *)request.headers, request.count, own_fd,
                                                      (uint64_t)start, (uint64_t)end, (uint64_t)block_size, (uint32_t)crc,
                                                      (uint64_t)crc_filled);
  int err = own_fd < 0 ? errno : ENOMEM;
  free_request(&request);
  if (!t) {
    if (own_fd >= 0) close(own_fd);
    return throw_errno(env, err, "fetchStart: cannot make the transfer");
  }
  return start_transfer(env, p, t);
}

static napi_value js_fetch_head(napi_env env, napi_callback_info info) {
  napi_value spec;
  js_request request;
  js_pool *p = pool_and_request(env, info, "fetchHead: url and headers are required", &spec, &request);
  if (!p) return NULL;
  fetch_transfer *t = fetch_head_new((uint64_t)get_int(env, spec, "id", 0), request.url, (const char *const *)request.headers, request.count);
  free_request(&request);
  if (!t) return throw_errno(env, ENOMEM, "fetchHead: cannot make the transfer");
  return start_transfer(env, p, t);
}

static napi_value js_fetch_verdict(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool accept = false;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fetch_transfer *t = argc >= 2 ? get_transfer(env, argv[0]) : NULL;
  if (!t) return NULL;
  CHECK(napi_get_value_bool(env, argv[1], &accept));
  fetch_verdict(t, accept);
  return NULL;
}

static napi_value js_fetch_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int64_t offset;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fetch_transfer *t = argc >= 2 ? get_transfer(env, argv[0]) : NULL;
  if (!t) return NULL;
  CHECK(napi_get_value_int64(env, argv[1], &offset));
  CHECK(napi_create_double(env, (double)fetch_watch(t, offset > 0 ? (uint64_t)offset : 1), &result));
  return result;
}

static napi_value js_fetch_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fetch_transfer *t = argc >= 1 ? get_transfer(env, argv[0]) : NULL;
  if (!t) return NULL;
  fetch_cancel(t);
  return NULL;
}

static napi_value js_fetch_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  js_pool *p = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "fetchClose: a fetch pool is required");
    return NULL;
  }
  close_pool(env, p);
  return NULL;
}

bool fetch_addon_init(napi_env env, napi_value exports) {
  if (fetch_global_init() != 0) {
    napi_throw_error(env, NULL, "stagefs native: libcurl did not initialise");
    return false;
  }
  napi_property_descriptor properties[] = {
      {"fetchOpen", NULL, js_fetch_open, NULL, NULL, NULL, napi_default, NULL},
      {"fetchStart", NULL, js_fetch_start, NULL, NULL, NULL, napi_default, NULL},
      {"fetchHead", NULL, js_fetch_head, NULL, NULL, NULL, napi_default, NULL},
      {"fetchVerdict", NULL, js_fetch_verdict, NULL, NULL, NULL, napi_default, NULL},
      {"fetchWatch", NULL, js_fetch_watch, NULL, NULL, NULL, napi_default, NULL},
      {"fetchCancel", NULL, js_fetch_cancel, NULL, NULL, NULL, napi_default, NULL},
      {"fetchClose", NULL, js_fetch_close, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties) == napi_ok;
}
