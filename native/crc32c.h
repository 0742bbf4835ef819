/* CRC32C of `length` bytes, continuing from `crc` (0 to start). */
#ifndef STAGEFS_CRC32C_H
#define STAGEFS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *data, size_t length);

#endif
