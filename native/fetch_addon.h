/* The fetch pool's functions for JavaScript (fetchOpen, fetchStart, ...): see fetch_addon.c. */
#ifndef STAGEFS_FETCH_ADDON_H
#define STAGEFS_FETCH_ADDON_H

#include <node_api.h>
#include <stdbool.h>

/* Initialises libcurl and defines the functions on `exports`; false with an exception pending. */
bool fetch_addon_init(napi_env env, napi_value exports);

#endif
