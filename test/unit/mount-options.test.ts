import t from 'tap';
import { toArgs, translateMountOptions } from '../../src/cli/mount-options';
import { UsageError } from '../../src/errors';

t.test('mount options become flags', async (t) => {
  const { options } = translateMountOptions(['endpoint=https://rgw.lab:443,cache_dir=/var/cache/x,cache_size=20G', 'ro,allow_other,uid=1000,gid=100']);
  t.same(options, {
    endpoint: 'https://rgw.lab:443',
    'cache-dir': '/var/cache/x',
    'cache-size': '20G',
    'read-only': true,
    'allow-other': true,
    uid: '1000',
    gid: '100',
  });
  t.same(translateMountOptions(['read_only,path_style,max_age=2d,metrics=127.0.0.1:9100']).options, {
    'read-only': true,
    'path-style': true,
    'max-age': '2d',
    metrics: '127.0.0.1:9100',
  });
  t.same(translateMountOptions(['cache-dir=/c']).options, { 'cache-dir': '/c' }, 'the flag spelling works too');
});

t.test("options mount(8), fstab and mount.fuse3 pass are accepted and ignored", async (t) => {
  const generic = 'rw,defaults,auto,noauto,user,nouser,users,nofail,_netdev,suid,nosuid,dev,nodev,exec,noexec,async,noatime,relatime,default_permissions';
  const systemd = 'x-systemd.automount,x-systemd.idle-timeout=60,x-systemd.requires=network-online.target,x-mount.mkdir,comment=systemd.automount';
  t.same(translateMountOptions([`${generic},${systemd}`]).options, {});
});

t.test('unknown or malformed options are refused by name, unless sloppy', async (t) => {
  t.throws(() => translateMountOptions(['cache_size=1G,bogus=1']), new UsageError("unknown mount option 'bogus=1'"));
  t.throws(() => translateMountOptions(['cache_size']), /mount option 'cache_size' needs a value/);
  t.throws(() => translateMountOptions(['ro=1']), /mount option 'ro' takes no value/);
  t.throws(() => translateMountOptions(['foreground']), /unknown mount option 'foreground'/, 'a helper never stays in the foreground');
  t.same(translateMountOptions(['bogus,cache_size=1G'], true), { options: { 'cache-size': '1G' }, ignored: ['bogus'] });
});

t.test('flag values go back to arguments for the daemon', async (t) => {
  t.same(toArgs({ 'cache-size': '1G', 'read-only': true, 'allow-other': false, uid: undefined }), ['--cache-size', '1G', '--read-only']);
});
