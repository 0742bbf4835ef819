{
  "targets": [
    {
      "target_name": "stagefs_native",
      "sources": ["native/addon.c", "native/session.c", "native/mount.c", "native/notify.c", "native/crc32c.c", "native/fetch.c", "native/fetch_addon.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "cflags!": ["-fno-exceptions"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lcurl"]
    }
  ]
}
