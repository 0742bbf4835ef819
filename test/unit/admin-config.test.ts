import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMountConfig, cacheRoot, metricsAddress, mountDirName, stateRoot } from '../../src/config';
import { parseAwsConfig } from '../../src/store/aws-config';
import { tempDir } from '../helpers/mount';

const NO_AWS = { AWS_CONFIG_FILE: '/nonexistent/config' };

t.test('a cache size below one block is refused with the numbers', async (t) => {
  t.throws(() => buildMountConfig('s3://b', '/m', { 'cache-size': '0' }, NO_AWS), /--cache-size: 0 B is less than one block \(1\.00 MiB, --block-size\)/);
  t.throws(() => buildMountConfig('s3://b', '/m', { 'cache-size': '64KiB', 'block-size': '128KiB' }, NO_AWS), /64\.0 KiB is less than one block \(128\.0 KiB/);
  t.equal(buildMountConfig('s3://b', '/m', { 'cache-size': '1MiB' }, NO_AWS).cache.capacityBytes, 1024 * 1024, 'one block is enough');
});

t.test('each mount gets its own default cache and state dirs', async (t) => {
  const a = buildMountConfig('s3://bucket/templates', '/mnt/a', {}, NO_AWS);
  const b = buildMountConfig('s3://bucket/templates', '/mnt/b', {}, NO_AWS);
  const c = buildMountConfig('s3://bucket/isos', '/mnt/a', {}, NO_AWS);
  t.equal(a.cache.dir, join(cacheRoot(), mountDirName({ bucket: 'bucket', prefix: 'templates/' }, '/mnt/a')));
  t.equal(a.stateDir, join(stateRoot(), mountDirName({ bucket: 'bucket', prefix: 'templates/' }, '/mnt/a')));
  t.not(a.cache.dir, b.cache.dir, 'two mountpoints');
  t.not(a.cache.dir, c.cache.dir, 'two prefixes');
  t.match(a.cache.dir, /bucket-templates@mnt-a\.[0-9a-f]{10}$/, 'readable');
  t.not(mountDirName({ bucket: 'b', prefix: 'x/y/' }, '/m'), mountDirName({ bucket: 'b', prefix: 'x-y/' }, '/m'), 'names that read alike differ');
  t.equal(buildMountConfig('s3://b', '/m', { 'cache-dir': '/c', 'state-dir': '/s' }, NO_AWS).cache.dir, '/c', 'the flag wins');
  if (process.getuid?.() === 0) {
    t.equal(cacheRoot(), '/var/cache/stagefs');
    t.equal(stateRoot(), '/var/lib/stagefs', 'state apart from the cache, which may be wiped');
  }
});

t.test('metrics addresses', async (t) => {
  t.same(metricsAddress('127.0.0.1:9100'), { host: '127.0.0.1', port: 9100 });
  t.same(metricsAddress('9100'), { host: '127.0.0.1', port: 9100 }, 'a bare port listens on loopback');
  t.same(metricsAddress('[::1]:9100'), { host: '::1', port: 9100 });
  t.same(metricsAddress(':9100'), { host: '0.0.0.0', port: 9100 });
  t.throws(() => metricsAddress('localhost'), /--metrics: 'localhost' is not an address/);
  t.throws(() => metricsAddress('1.2.3.4:99999'), /--metrics/);
});

t.test('the CA bundle is chosen as the AWS CLI chooses it', async (t) => {
  const dir = tempDir(t, 'awsconfig');
  const configFile = join(dir, 'config');
  writeFileSync(configFile, '[default]\nregion = eu-central-1\n\n[profile lab]\nregion=us-west-1\nca_bundle = /etc/lab-ca.pem\ns3 =\n  addressing_style = path\n');
  const env = { AWS_CONFIG_FILE: configFile };
  const bundle = (options: object, extra: object = {}) => buildMountConfig('s3://b', '/m', options, { ...env, ...extra }).store.caBundle;
  t.equal(bundle({}), undefined, 'none by default');
  t.same(bundle({}, { AWS_PROFILE: 'lab' }), { path: '/etc/lab-ca.pem', source: "ca_bundle of profile 'lab'" });
  t.same(bundle({ profile: 'lab' }), { path: '/etc/lab-ca.pem', source: "ca_bundle of profile 'lab'" }, '--profile');
  t.same(bundle({}, { AWS_PROFILE: 'lab', AWS_CA_BUNDLE: '/env.pem' }), { path: '/env.pem', source: 'AWS_CA_BUNDLE' }, 'the environment wins over the profile');
  t.same(bundle({ 'ca-bundle': '/flag.pem' }, { AWS_CA_BUNDLE: '/env.pem' }), { path: '/flag.pem', source: '--ca-bundle' }, 'the flag wins');
  t.equal(buildMountConfig('s3://b', '/m', {}, env).store.region, 'eu-central-1', 'the default profile gives a region');
  t.equal(buildMountConfig('s3://b', '/m', { profile: 'lab' }, { ...env, AWS_REGION: 'ap-south-1' }).store.region, 'ap-south-1', 'AWS_REGION wins');
});

t.test('the shared config file', async (t) => {
  const profiles = parseAwsConfig('# comment\n[default]\nregion = a\n; other\n[profile x]\nca_bundle=/p.pem\n  nested = no\n[sso-session s]\nsso_region = z\n');
  t.same(profiles.get('default'), { region: 'a' });
  t.same(profiles.get('x'), { ca_bundle: '/p.pem' }, 'nested settings are not the profile’s');
});
