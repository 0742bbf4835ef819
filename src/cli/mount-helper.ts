/**
 * stagefs as a mount(8) helper. `mount -t fuse.stagefs SOURCE DIR -o OPTIONS` (and an fstab line
 * of type fuse.stagefs) runs mount.fuse3, which runs `stagefs SOURCE DIR -o OPTIONS`; a link
 * /sbin/mount.fuse.stagefs -> stagefs is run by mount(8) itself as
 * `mount.fuse.stagefs SOURCE DIR [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]`.
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors';
import { expectPositionals } from './args';
import { mount } from './mount-command';
import { translateMountOptions } from './mount-options';

export async function mountHelper(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        o: { type: 'string', multiple: true },
        t: { type: 'string' },
        N: { type: 'string' },
        s: { type: 'boolean' },
        f: { type: 'boolean' },
        n: { type: 'boolean' },
        v: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]);
  }
  const { values, positionals } = parsed;
  expectPositionals(positionals, ['SOURCE', 'MOUNTPOINT']);
  if (values.N) throw new UsageError('-N (mounting in another namespace) is not supported');
  if (values.t && !/^(fuse\.)?stagefs$/.test(values.t)) throw new UsageError(`-t ${values.t}: this helper mounts fuse.stagefs`);
  const { options, ignored } = translateMountOptions(values.o ?? [], values.s);
  if (ignored.length) console.error(`stagefs: ignoring unknown mount options (sloppy): ${ignored.join(',')}`);
  return mount({ source: positionals[0], mountpoint: positionals[1], options, quiet: true, fake: values.f });
}
