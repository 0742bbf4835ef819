import t from 'tap';
import { buildMountConfig, parseBucketUrl } from '../../src/config';
import { UsageError } from '../../src/errors';
import { formatBytes, parseDuration, parseSize } from '../../src/units';

t.test('sizes', async (t) => {
  t.equal(parseSize('4096'), 4096);
  t.equal(parseSize('512MiB'), 512 * 1024 ** 2);
  t.equal(parseSize('10GiB'), 10 * 1024 ** 3);
  t.equal(parseSize('1.5G'), 1.5 * 1024 ** 3);
  t.equal(parseSize('2MB'), 2_000_000);
  t.throws(() => parseSize('ten'), /not a size/);
  t.throws(() => parseSize('5XB'), /not a size/);
  t.equal(formatBytes(1536), '1.50 KiB');
});

t.test('durations', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('24h'), 86_400_000);
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('2'), 2000, 'a bare number is seconds');
  t.throws(() => parseDuration('soon'), /not a duration/);
});

t.test('bucket urls', async (t) => {
  t.same(parseBucketUrl('s3://bucket'), { bucket: 'bucket', prefix: '' });
  t.same(parseBucketUrl('s3://bucket/'), { bucket: 'bucket', prefix: '' });
  t.same(parseBucketUrl('s3://bucket/a/b'), { bucket: 'bucket', prefix: 'a/b/' });
  t.same(parseBucketUrl('s3://bucket//a//b/'), { bucket: 'bucket', prefix: 'a/b/' });
  t.throws(() => parseBucketUrl('bucket/a'), UsageError);
  t.throws(() => parseBucketUrl('s3://b/../etc'), UsageError);
});

t.test('mount config validates each option and names it', async (t) => {
  const env = { AWS_REGION: 'eu-west-1' };
  const config = buildMountConfig('s3://b/p', '/mnt/x', { endpoint: 'http://127.0.0.1:9000', 'cache-size': '1GiB' }, env);
  t.equal(config.store.region, 'eu-west-1', 'region from the environment');
  t.equal(config.store.pathStyle, true, 'path style for an IP endpoint');
  t.equal(config.cache.capacityBytes, 1024 ** 3);
  t.equal(buildMountConfig('s3://b', '/m', { region: 'us-west-2' }, env).store.region, 'us-west-2', 'the flag wins');
  t.equal(buildMountConfig('s3://b', '/m', {}, { AWS_ENDPOINT_URL_S3: 'http://localhost:1' }).store.endpoint, 'http://localhost:1');
  t.throws(() => buildMountConfig('s3://b', '/m', { 'cache-size': 'big' }), /--cache-size/);
  t.throws(() => buildMountConfig('s3://b', '/m', { 'block-size': '1000' }), /--block-size/);
  t.throws(() => buildMountConfig('s3://b', '/m', { 'metadata-ttl': 'x' }), /--metadata-ttl/);
  t.equal(config.readMemoryBytes, 16 * 1024 ** 2, 'read replies get 16 MiB by default');
  t.equal(buildMountConfig('s3://b', '/m', { 'read-memory': '1MiB' }).readMemoryBytes, 1024 ** 2);
  t.throws(() => buildMountConfig('s3://b', '/m', { 'read-memory': '512KiB' }), /--read-memory: .*less than one read/);
  t.throws(() => buildMountConfig('s3://b', '/m', { endpoint: 'ftp://x' }), /--endpoint/);
  t.throws(() => buildMountConfig('s3://b', '/m', { uid: 'root' }), /--uid/);
  t.throws(() => buildMountConfig('s3://b', '/m', { 'low-watermark': '90%', 'high-watermark': '80%' }), /low-watermark/);
  t.equal(config.store.fetcher, undefined, 'the fetcher is the native one where the addon loads, unless asked');
  t.equal(buildMountConfig('s3://b', '/m', { fetcher: 'js' }).store.fetcher, 'js');
  t.throws(() => buildMountConfig('s3://b', '/m', { fetcher: 'curl' }), /--fetcher: 'curl' is not a fetcher; choose native or js/);
});
