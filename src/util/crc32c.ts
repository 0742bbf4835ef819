/**
 * CRC32C (Castagnoli) of bytes: the addon's (hardware-assisted) when it loads, else a portable
 * table-driven one, so machines running only the fuse-native engine check staged blocks too.
 */
import { loadNativeAddon } from '../native/addon';

const POLY = 0x82f63b78;

/** tables[k][n]: the CRC of byte n followed by k zero bytes (slicing by 8). */
const tables = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let crc = n;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ POLY : crc >>> 1;
    t[0][n] = crc >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k][n] = (t[k - 1][n] >>> 8) ^ t[0][t[k - 1][n] & 0xff];
  }
  return t;
})();

/** The CRC32C of `bytes`, continuing from `crc` (0 to start), in JavaScript alone. */
export function portableCrc32c(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = tables;
  let c = ~crc >>> 0;
  let i = 0;
  const end8 = bytes.length - (bytes.length % 8);
  for (; i < end8; i += 8) {
    const lo = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    c =
      t7[lo & 0xff] ^
      t6[(lo >>> 8) & 0xff] ^
      t5[(lo >>> 16) & 0xff] ^
      t4[lo >>> 24] ^
      t3[bytes[i + 4]] ^
      t2[bytes[i + 5]] ^
      t1[bytes[i + 6]] ^
      t0[bytes[i + 7]];
  }
  for (; i < bytes.length; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const loaded = loadNativeAddon();

/** The CRC32C of `bytes`, continuing from `crc` (0 to start). */
export const crc32c: (bytes: Uint8Array, crc?: number) => number =
  'addon' in loaded ? (bytes, crc = 0) => loaded.addon.crc32c(bytes, crc) : portableCrc32c;
