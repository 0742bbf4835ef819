/**
 * Sample data shaped like a cloud's secondary storage (CloudStack's layout): templates with
 * their properties, an ISO, volume snapshots. Contents are random bytes, as disk images are to a
 * cache.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { ObjectStore } from '../store/object-store';

const MiB = 1024 * 1024;

export interface SeededObject {
  key: string;
  size: number;
}

function templateProperties(uuid: string, size: number): string {
  return [
    `uniquename=201-2-${uuid}`,
    'filename=' + `${uuid}.qcow2`,
    'description=CentOS 7 (demo)',
    'hvm=true',
    'qcow2=true',
    `qcow2.size=${size}`,
    `qcow2.virtualsize=${size * 4}`,
    `size=${size}`,
    `virtualsize=${size * 4}`,
    'public=true',
    'id=201',
    '',
  ].join('\n');
}

export async function seedDemoData(store: ObjectStore, prefix = ''): Promise<SeededObject[]> {
  const template = randomUUID();
  const objects: Array<[string, Uint8Array]> = [
    [`template/tmpl/2/201/${template}.qcow2`, randomBytes(48 * MiB)],
    [`template/tmpl/2/201/template.properties`, Buffer.from(templateProperties(template, 48 * MiB))],
    [`template/tmpl/1/3/${randomUUID()}.vhd`, randomBytes(16 * MiB)],
    ['iso/2/202/systemvm-demo.iso', randomBytes(24 * MiB)],
    [`snapshots/2/15/${randomUUID()}`, randomBytes(12 * MiB)],
    [`snapshots/2/15/${randomUUID()}`, randomBytes(4 * MiB)],
    [`snapshots/2/16/${randomUUID()}`, randomBytes(8 * MiB)],
    ['volumes/', new Uint8Array(0)],
    ['README.txt', Buffer.from('stagefs demo bucket: templates, an ISO and snapshots, as a cloud keeps them.\n')],
  ];
  await Promise.all(objects.map(([key, body]) => store.put(prefix + key, body)));
  return objects.map(([key, body]) => ({ key: prefix + key, size: body.length }));
}
