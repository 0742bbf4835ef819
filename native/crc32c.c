/*
 * CRC32C (Castagnoli), as S3's x-amz-checksum-crc32c and iSCSI use it: with the SSE4.2 crc32
 * instruction where the CPU has it, else eight table lookups per 8 bytes. One crc32 instruction
 * waits for the one before it; three independent runs over three lanes of a stripe keep the
 * CPU's pipeline full (about three times the speed), and their CRCs are joined by shifting each
 * over the lanes after it, which for a fixed lane length is four table lookups.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#define POLY 0x82f63b78u

/* Bytes per lane: a stripe of three lanes stays in the L1 cache. */
#define LANE 4096

static uint32_t table[8][256];
/* shift[k][b]: the CRC register holding byte b at byte k, after LANE zero bytes more. */
static uint32_t shift[4][256];
static int hardware;
/* Fetch threads compute CRCs at once: the tables are made once, before any thread reads them. */
static pthread_once_t initialized = PTHREAD_ONCE_INIT;

static uint32_t zeros_after(uint32_t crc, size_t n) {
  while (n--) crc = (crc >> 8) ^ table[0][crc & 0xff];
  return crc;
}

static uint32_t shifted(uint32_t crc) {
  return shift[0][crc & 0xff] ^ shift[1][(crc >> 8) & 0xff] ^ shift[2][(crc >> 16) & 0xff] ^ shift[3][crc >> 24];
}

static void init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t crc = n;
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
    table[0][n] = crc;
  }
  for (uint32_t n = 0; n < 256; n++)
    for (int k = 1; k < 8; k++) table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
  /* The register is linear in its bits: shift each bit alone, then combine per byte value. */
  uint32_t bit_shifted[32];
  for (int bit = 0; bit < 32; bit++) bit_shifted[bit] = zeros_after(1u << bit, LANE);
  for (int k = 0; k < 4; k++)
    for (uint32_t b = 0; b < 256; b++) {
      uint32_t value = 0;
      for (int bit = 0; bit < 8; bit++)
        if (b & (1u << bit)) value ^= bit_shifted[8 * k + bit];
      shift[k][b] = value;
    }
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
  while (n >= 3 * LANE) {
    uint64_t b = 0, d = 0;
    for (size_t i = 0; i < LANE; i += 8) {
      uint64_t w0, w1, w2;
      memcpy(&w0, p + i, 8);
      memcpy(&w1, p + LANE + i, 8);
      memcpy(&w2, p + 2 * LANE + i, 8);
      c = __builtin_ia32_crc32di(c, w0);
      b = __builtin_ia32_crc32di(b, w1);
      d = __builtin_ia32_crc32di(d, w2);
    }
    c = shifted(shifted((uint32_t)c) ^ (uint32_t)b) ^ (uint32_t)d;
    p += 3 * LANE;
    n -= 3 * LANE;
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
  pthread_once(&initialized, init);
  crc = ~crc;
#if defined(__x86_64__)
  if (hardware) return ~crc_hardware(crc, data, length);
#endif
  return ~crc_table(crc, data, length);
}
