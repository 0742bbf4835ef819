/** Putting many objects into the test server quickly. */
import type { ObjectStore } from '../../src/store/object-store';

export async function putMany(store: ObjectStore, objects: Array<[string, Uint8Array]>, concurrency = 32): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < objects.length) {
      const [key, body] = objects[next++];
      await store.put(key, body);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
