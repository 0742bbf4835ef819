/*
 * CRC32C (Castagnoli), as S3's x-amz-checksum-crc32c and iSCSI use it: with the SSE4.2 crc32
 * instruction where the CPU has it (several GB/s), else eight table lookups per 8 bytes.
 */
#include "crc32c.h"

#include <stddef.h>
#include <string.h>

#define POLY 0x82f63b78u

static uint32_t table[8][256];
static int hardware = -1;

static void init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t crc = n;
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
    table[0][n] = crc;
  }
  for (uint32_t n = 0; n < 256; n++)
    for (int k = 1; k < 8; k++) table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
#if defined(__x86_64__)
  __builtin_cpu_init();
  hardware = __builtin_cpu_supports("sse4.2");
#else
  hardware = 0;
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hardware(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t c = crc;
  while (n && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    n--;
  }
  while (n >= 8) {
    uint64_t word;
    memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
    p += 8;
    n -= 8;
  }
  while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return (uint32_t)c;
}
#endif

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t n) {
  while (n >= 8) {
    uint64_t word;
    memcpy(&word, p, 8);
    word ^= crc;
    crc = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^ table[5][(word >> 16) & 0xff] ^ table[4][(word >> 24) & 0xff] ^
          table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^ table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
  return crc;
}

uint32_t crc32c(uint32_t crc, const void *data, size_t length) {
  if (hardware < 0) init();
  crc = ~crc;
#if defined(__x86_64__)
  if (hardware) return ~crc_hardware(crc, data, length);
#endif
  return ~crc_table(crc, data, length);
}
