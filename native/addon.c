/*
 * The stagefs native engine as a Node addon (N-API). JavaScript mounts, opens a session with a
 * callback for events, answers the requests it receives, and registers read-only open files
 * whose staged ranges the request threads then serve on their own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "crc32c.h"
#include "fetch_addon.h"
#include "js_values.h"
#include "fuse_abi.h"
#include "mount.h"
#include "notify.h"
#include "session.h"

static session *get_session(napi_env env, napi_value value) {
  session *s = NULL;
  if (napi_get_value_external(env, value, (void **)&s) != napi_ok || !s || s->fd < 0) {
    napi_throw_error(env, NULL, "stagefs native: not an open session");
    return NULL;
  }
  return s;
}

/* mount({ mountpoint, source, allowOther, readOnly }) -> /dev/fuse descriptor */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char mountpoint[4096], source[1024], error[512];
  if (argc < 1 || !get_string(env, argv[0], "mountpoint", mountpoint, sizeof(mountpoint)) ||
      !get_string(env, argv[0], "source", source, sizeof(source))) {
    napi_throw_type_error(env, NULL, "mount: mountpoint and source are required");
    return NULL;
  }
  mount_options options = {mountpoint, source, get_bool(env, argv[0], "allowOther"), get_bool(env, argv[0], "readOnly")};
  int fd = stagefs_mount(&options, error, sizeof(error));
  if (fd < 0) return throw_errno(env, errno ? errno : EIO, error);
  CHECK(napi_create_int32(env, fd, &result));
  return result;
}

static void free_handle(napi_env env, fast_handle *h) {
  if (h->bitmap_ref) napi_delete_reference(env, h->bitmap_ref);
  close(h->fd);
  free(h);
}

static void finalize_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/* Marks the buffers of requests handed to JavaScript, the only ones releaseRequest may detach. */
static const napi_type_tag REQUEST_TAG = {0x73746167656673ULL, 0x7265717565737431ULL};

/* Something the addon cannot hand to JavaScript: said on stderr (the daemon's log). */
static void complain(napi_env env, const char *what) {
  char text[512] = "";
  napi_value exception, message;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &exception) == napi_ok &&
      napi_coerce_to_string(env, exception, &message) == napi_ok) {
    size_t length;
    napi_get_value_string_utf8(env, message, text, sizeof(text), &length);
  }
  fprintf(stderr, "stagefs native: %s%s%s\n", what, text[0] ? ": " : "", text);
}

/* The arguments of the JavaScript event handler for `event`; false when they cannot be made. */
static bool event_arguments(napi_env env, session_event *event, napi_value *argv, size_t *argc) {
  *argc = 2;
  if (napi_create_int32(env, event->kind, &argv[0]) != napi_ok) return false;
  switch (event->kind) {
    case SESSION_EVENT_REQUEST:
      if (napi_create_external_buffer(env, event->size, event->data, finalize_buffer, NULL, &argv[1]) != napi_ok) return false;
      event->data = NULL; /* the buffer owns it now */
      return napi_type_tag_object(env, argv[1], &REQUEST_TAG) == napi_ok;
    case SESSION_EVENT_HIT:
      *argc = 4;
      return napi_create_double(env, (double)event->fh, &argv[1]) == napi_ok &&
             napi_create_double(env, (double)event->offset, &argv[2]) == napi_ok &&
             napi_create_double(env, (double)event->length, &argv[3]) == napi_ok;
    case SESSION_EVENT_INIT:
    case SESSION_EVENT_CLOSED:
      return napi_create_int32(env, event->error, &argv[1]) == napi_ok;
  }
  return false;
}

/*
 * Runs on the JavaScript thread. Whatever goes wrong here fails the one request (EIO), never the
 * process: a second answer to a request the handler did answer is ignored by the kernel.
 */
static void call_js(napi_env env, napi_value callback, void *context, void *data) {
  session *s = context;
  session_event *event = data;
  /* env is NULL while the channel is being torn down: the session may be gone, touch only the event. */
  if (env != NULL) {
    napi_value argv[4], undefined;
    size_t argc;
    uint64_t unique = event->kind == SESSION_EVENT_REQUEST && event->size >= sizeof(struct fuse_in_header)
                          ? ((const struct fuse_in_header *)event->data)->unique
                          : 0;
    bool delivered = napi_get_undefined(env, &undefined) == napi_ok && event_arguments(env, event, argv, &argc);
    if (!delivered) {
      complain(env, "cannot pass an event to JavaScript");
    } else if (napi_call_function(env, undefined, callback, argc, argv, NULL) != napi_ok) {
      complain(env, "the event handler failed");
      delivered = false;
    }
    if (!delivered && unique && s->fd >= 0) session_reply(s, unique, EIO, NULL, 0);
  }
  free(event->data);
  free(event);
}

static void finalize_session(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session *s = data;
  session_close_events(s);
  session_release(s);
}

static void finalize_external(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_release(data);
}

/* open(fd, { threads, passthrough }, onEvent) -> session */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], name, result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "open: fd, options and a callback are required");
    return NULL;
  }
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  session *s = calloc(1, sizeof(*s));
  if (!s) return throw_errno(env, ENOMEM, "open: out of memory");
  s->fd = fd;
  int64_t threads = get_int(env, argv[1], "threads", 4);
  s->thread_count = threads < 1 ? 1 : threads > SESSION_MAX_THREADS ? SESSION_MAX_THREADS : (int)threads;
  s->want_passthrough = get_bool(env, argv[1], "passthrough");
  session_init(s);
  napi_threadsafe_function events;
  if (napi_create_string_utf8(env, "stagefs-fuse", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, s, finalize_session, s, call_js, &events) != napi_ok) {
    session_release(s);
    napi_throw_error(env, NULL, "open: cannot create the event channel");
    return NULL;
  }
  atomic_fetch_add(&s->refs, 1); /* the event channel's, released by finalize_session */
  session_open_events(s, events);
  if (napi_create_external(env, s, finalize_external, NULL, &result) != napi_ok) {
    napi_release_threadsafe_function(events, napi_tsfn_release);
    session_release(s);
    napi_throw_error(env, NULL, "open: cannot create the session handle");
    return NULL;
  }
  int err = session_start(s);
  if (err) {
    /* Threads that started stop when the caller unmounts; the session stays to be closed. */
    return throw_errno(env, err, "open: cannot start request threads");
  }
  return result;
}

/* reply(session, unique: bigint, errno: number, data?: Buffer | Buffer[]) -> 0 or errno */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  uint64_t unique;
  bool lossless;
  int32_t error;
  CHECK(napi_get_value_bigint_uint64(env, argv[1], &unique, &lossless));
  CHECK(napi_get_value_int32(env, argv[2], &error));
  struct iovec parts[7];
  int count = 0;
  if (argc > 3) {
    bool is_array = false;
    napi_valuetype type;
    CHECK(napi_typeof(env, argv[3], &type));
    if (type != napi_undefined) {
      CHECK(napi_is_array(env, argv[3], &is_array));
      uint32_t length = 1;
      if (is_array) CHECK(napi_get_array_length(env, argv[3], &length));
      if (length > 7) {
        napi_throw_range_error(env, NULL, "reply: at most 7 data parts");
        return NULL;
      }
      for (uint32_t i = 0; i < length; i++) {
        napi_value part = argv[3];
        if (is_array) CHECK(napi_get_element(env, argv[3], i, &part));
        CHECK(napi_get_buffer_info(env, part, &parts[count].iov_base, &parts[count].iov_len));
        count++;
      }
    }
  }
  int err = session_reply(s, unique, error, parts, count);
  CHECK(napi_create_int32(env, err, &result));
  return result;
}

/* registerHandle(session, fh, fd, bitmap: Uint8Array, blockSize, size) */
static napi_value js_register_handle(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  int64_t fh, size;
  int32_t fd;
  uint32_t block_size;
  napi_typedarray_type type;
  size_t length, offset;
  void *bits;
  napi_value arraybuffer;
  CHECK(napi_get_value_int64(env, argv[1], &fh));
  CHECK(napi_get_value_int32(env, argv[2], &fd));
  CHECK(napi_get_typedarray_info(env, argv[3], &type, &length, &bits, &arraybuffer, &offset));
  CHECK(napi_get_value_uint32(env, argv[4], &block_size));
  CHECK(napi_get_value_int64(env, argv[5], &size));
  if (type != napi_uint8_array || block_size == 0 || (uint64_t)length * 8 * block_size < (uint64_t)size) {
    napi_throw_range_error(env, NULL, "registerHandle: the bitmap does not cover the file");
    return NULL;
  }
  napi_ref ref;
  CHECK(napi_create_reference(env, argv[3], 1, &ref));
  int err = session_register_handle(s, (uint64_t)fh, fd, bits, length, block_size, (uint64_t)size, ref);
  if (err) {
    napi_delete_reference(env, ref);
    return throw_errno(env, err, err == EEXIST ? "registerHandle: the handle is registered already" : "registerHandle failed");
  }
  return NULL;
}

/* unregisterHandle(session, fh): waits for fast-path reads of it to finish */
static napi_value js_unregister_handle(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  int64_t fh;
  CHECK(napi_get_value_int64(env, argv[1], &fh));
  fast_handle *h = session_unregister_handle(s, (uint64_t)fh);
  if (h) free_handle(env, h);
  return NULL;
}

/* backingOpen(session, fd) -> backing id for FOPEN_PASSTHROUGH */
static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  struct stagefs_backing_map map = {.fd = fd, .flags = 0, .padding = 0};
  int id = ioctl(s->fd, STAGEFS_DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) return throw_errno(env, errno, "FUSE_DEV_IOC_BACKING_OPEN failed");
  CHECK(napi_create_int32(env, id, &result));
  return result;
}

static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  uint32_t id;
  CHECK(napi_get_value_uint32(env, argv[1], &id));
  if (ioctl(s->fd, STAGEFS_DEV_IOC_BACKING_CLOSE, &id) < 0) return throw_errno(env, errno, "FUSE_DEV_IOC_BACKING_CLOSE failed");
  return NULL;
}

static void set_number(napi_env env, napi_value object, const char *name, double number) {
  napi_value value;
  napi_create_double(env, number, &value);
  napi_set_named_property(env, object, name, value);
}

/* info(session) -> what INIT negotiated */
static napi_value js_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, flag;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  CHECK(napi_create_object(env, &result));
  set_number(env, result, "protocolMinor", s->proto_minor);
  set_number(env, result, "maxWrite", s->max_write);
  set_number(env, result, "maxReadahead", s->max_readahead);
  set_number(env, result, "threads", s->thread_count);
  CHECK(napi_get_boolean(env, s->passthrough, &flag));
  CHECK(napi_set_named_property(env, result, "passthrough", flag));
  return result;
}

/* stats(session) -> what the request threads served on their own */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  CHECK(napi_create_object(env, &result));
  set_number(env, result, "fastReads", (double)atomic_load(&s->fast_reads));
  set_number(env, result, "fastReadBytes", (double)atomic_load(&s->fast_read_bytes));
  return result;
}

/* notify(socketPath, message) -> 0 or errno */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[256], message[4096];
  size_t length;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &length) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], message, sizeof(message), &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify: a socket path and a message are required");
    return NULL;
  }
  CHECK(napi_create_int32(env, stagefs_notify(path, message), &result));
  return result;
}

/* redirectStderr(fd): standard error now writes to fd */
static napi_value js_redirect_stderr(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  if (dup2(fd, STDERR_FILENO) < 0) return throw_errno(env, errno, "redirectStderr: dup2 failed");
  return NULL;
}

/* close(session): after the CLOSED event; joins threads, closes the device and the event channel, frees the handles */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session *s = get_session(env, argv[0]);
  if (!s) return NULL;
  session_join(s);
  for (fast_handle *h = session_take_all_handles(s), *next; h; h = next) {
    next = h->next;
    free_handle(env, h);
  }
  close(s->fd);
  s->fd = -1;
  session_close_events(s);
  napi_release_threadsafe_function(s->events, napi_tsfn_release);
  return NULL;
}

/* punchHole(fd, offset, length): frees a range's disk blocks, keeping the file's size */
static napi_value js_punch_hole(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  int64_t offset, length;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int64(env, argv[1], &offset));
  CHECK(napi_get_value_int64(env, argv[2], &length));
  if (offset < 0 || length <= 0) {
    napi_throw_range_error(env, NULL, "punchHole: a range of at least one byte is required");
    return NULL;
  }
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0)
    return throw_errno(env, errno, "punchHole failed");
  return NULL;
}

/*
 * releaseRequest(request: Buffer): frees a request's memory now rather than at some later garbage
 * collection (a WRITE carries up to 1 MiB): its buffer is detached, so anything still holding a
 * view of it sees no bytes, never freed memory. Only buffers of requests are accepted.
 */
static napi_value js_release_request(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arraybuffer;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool tagged = false;
  if (argc < 1 || napi_check_object_type_tag(env, argv[0], &REQUEST_TAG, &tagged) != napi_ok || !tagged) {
    napi_throw_type_error(env, NULL, "releaseRequest: the buffer of a request is required");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, &arraybuffer, &offset));
  CHECK(napi_detach_arraybuffer(env, arraybuffer));
  return NULL;
}

/* crc32c(bytes: Uint8Array, crc?: number) -> the CRC32C of the bytes, continuing from `crc` */
static napi_value js_crc32c(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value arraybuffer;
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &type, &length, &data, &arraybuffer, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "crc32c: a Uint8Array is required");
    return NULL;
  }
  uint32_t crc = 0;
  if (argc > 1) {
    napi_valuetype kind;
    CHECK(napi_typeof(env, argv[1], &kind));
    if (kind == napi_number) CHECK(napi_get_value_uint32(env, argv[1], &crc));
  }
  CHECK(napi_create_uint32(env, crc32c(crc, data, length), &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  crc32c(0, "", 0); /* builds its tables now, on one thread */
  if (!fetch_addon_init(env, exports)) return NULL;
  napi_property_descriptor properties[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, js_reply, NULL, NULL, NULL, napi_default, NULL},
      {"registerHandle", NULL, js_register_handle, NULL, NULL, NULL, napi_default, NULL},
      {"unregisterHandle", NULL, js_unregister_handle, NULL, NULL, NULL, napi_default, NULL},
      {"backingOpen", NULL, js_backing_open, NULL, NULL, NULL, napi_default, NULL},
      {"backingClose", NULL, js_backing_close, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, js_notify, NULL, NULL, NULL, napi_default, NULL},
      {"redirectStderr", NULL, js_redirect_stderr, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"punchHole", NULL, js_punch_hole, NULL, NULL, NULL, napi_default, NULL},
      {"crc32c", NULL, js_crc32c, NULL, NULL, NULL, napi_default, NULL},
      {"releaseRequest", NULL, js_release_request, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
