import { randomBytes } from 'node:crypto';
import t from 'tap';
import { loadNativeAddon } from '../../src/native/addon';
import { crc32c, portableCrc32c } from '../../src/util/crc32c';

t.test('the portable CRC32C gives the check value and continues across pieces', async (t) => {
  t.equal(portableCrc32c(Buffer.from('123456789')), 0xe3069283, 'the CRC-32C check value');
  t.equal(portableCrc32c(new Uint8Array(0)), 0, 'of nothing');
  t.equal(portableCrc32c(new Uint8Array(32)), 0x8a9136aa, '32 zero bytes (RFC 3720 B.4)');
  const bytes = randomBytes(100_003);
  for (const cut of [0, 1, 7, 8, 4097, 100_003]) {
    t.equal(portableCrc32c(bytes.subarray(cut), portableCrc32c(bytes.subarray(0, cut))), portableCrc32c(bytes), `split at ${cut}`);
  }
});

t.test('the CRC32C in use agrees with the portable one, and is the addon where it loads', async (t) => {
  // Around the native code's stripe of three 4 KiB lanes, which it joins: short of one, one, past two.
  for (const length of [0, 1, 7, 9, 3 * 4096 - 1, 3 * 4096, 3 * 4096 + 1, 2 * 3 * 4096 + 13, 1024 * 1024 + 5]) {
    const bytes = randomBytes(length);
    t.equal(crc32c(bytes), portableCrc32c(bytes), `${length} bytes`);
    t.equal(crc32c(bytes.subarray(3), crc32c(bytes.subarray(0, 3))), portableCrc32c(bytes), `${length} bytes in two pieces`);
  }
  const loaded = loadNativeAddon();
  if ('addon' in loaded) t.not(crc32c, portableCrc32c, 'the addon computes it here');
});
