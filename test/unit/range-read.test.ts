import { randomBytes } from 'node:crypto';
import t from 'tap';
import { StoreError } from '../../src/errors';
import { rangeResponseProblem, READ_ATTEMPTS, resumingRange, type RangeBody } from '../../src/store/range-read';

const ETAG = '"abc"';

t.test('a range response is data only when it is exactly the range asked for', async (t) => {
  const good = { status: 206, contentRange: 'bytes 100-199/1000', contentLength: 100, etag: ETAG };
  t.equal(rangeResponseProblem(good, 100, 200, ETAG), undefined, 'a 206 of the range at the ETag');
  t.equal(rangeResponseProblem({ ...good, contentRange: 'bytes 100-199/*' }, 100, 200, ETAG), undefined, 'an unknown total is fine');
  const bad: Array<[string, object, RegExp]> = [
    ['a 200 (the whole object)', { status: 200, contentRange: undefined, contentLength: 1000 }, /status 200/],
    ['another range', { contentRange: 'bytes 0-99/1000' }, /Content-Range bytes 0-99\/1000/],
    ['no Content-Range', { contentRange: undefined }, /Content-Range missing/],
    ['a range past the object', { contentRange: 'bytes 100-199/150' }, /ends past the object/],
    ['a short Content-Length', { contentLength: 50 }, /Content-Length 50/],
    ['another ETag', { etag: '"def"' }, /ETag "def", asked for "abc"/],
    ['no ETag', { etag: undefined }, /ETag missing/],
  ];
  for (const [what, change, message] of bad) t.match(rangeResponseProblem({ ...good, ...change }, 100, 200, ETAG), message, what);
});

/** A body of `bytes` in chunks of `chunk`, that throws after `breakAfter` bytes when given. */
function body(bytes: Buffer, chunk: number, breakAfter?: number, onDestroy?: () => void): RangeBody {
  return {
    async *[Symbol.asyncIterator]() {
      for (let offset = 0; offset < bytes.length; offset += chunk) {
        if (breakAfter !== undefined && offset >= breakAfter) throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
        yield bytes.subarray(offset, Math.min(bytes.length, offset + chunk));
      }
    },
    destroy: onDestroy,
  };
}

async function collect(iterable: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of iterable) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

t.test('a body that breaks off resumes at the first byte not delivered, and delivers each byte once', async (t) => {
  const object = randomBytes(10_000);
  const opened: Array<[number, number]> = [];
  const read = resumingRange(
    async (start, end) => {
      opened.push([start, end]);
      // Every response breaks after 3,000 bytes, until the last.
      return body(object.subarray(start, end), 1000, end - start > 3000 ? 3000 : undefined);
    },
    1000,
    10_000,
    'test',
  );
  t.same(await collect(read), object.subarray(1000, 10_000), 'the bytes asked for, exactly');
  t.same(opened, [[1000, 10_000], [4000, 10_000], [7000, 10_000]], 'each GET starts where the last one broke off');
});

t.test('bodies of the wrong length are resumed, never handed on', async (t) => {
  const object = randomBytes(5000);
  let calls = 0;
  const short = resumingRange(
    async (start, end) => {
      calls++;
      return body(object.subarray(start, calls === 1 ? start + 100 : end), 64);
    },
    0,
    5000,
    'test',
  );
  t.same(await collect(short), object, 'a body that ended short is completed by a second GET');
  t.equal(calls, 2);

  calls = 0;
  const longer = Buffer.concat([object, randomBytes(10)]);
  const long = resumingRange(
    async (start, end) => {
      calls++;
      return body(longer.subarray(start, calls === 1 ? end + 1 : end), 5001);
    },
    0,
    5000,
    'test',
  );
  t.same(await collect(long), object, 'a body with more bytes than asked is dropped and fetched again');
  t.equal(calls, 2);
});

t.test('bad responses are retried a few times in a row, then fail the read', async (t) => {
  const object = randomBytes(100);
  let calls = 0;
  const bad = (failures: number) => async (start: number, end: number) => {
    calls++;
    if (calls <= failures) throw new StoreError('BadResponse', 'a 200 for a range');
    return body(object.subarray(start, end), 100);
  };
  t.same(await collect(resumingRange(bad(READ_ATTEMPTS - 1), 0, 100, 'test')), object, `${READ_ATTEMPTS - 1} bad responses in a row are survived`);
  calls = 0;
  const failure = await collect(resumingRange(bad(READ_ATTEMPTS), 0, 100, 'test')).catch((err: unknown) => err);
  t.match(failure, { kind: 'BadResponse' }, `${READ_ATTEMPTS} fail the read`);
  t.equal(calls, READ_ATTEMPTS);
});

t.test('a changed or missing object is not retried; a failing server is, a few times in a row', async (t) => {
  for (const [kind, requests] of [
    ['PreconditionFailed', 1],
    ['NotFound', 1],
    ['Server', READ_ATTEMPTS],
  ] as const) {
    let calls = 0;
    const read = resumingRange(
      async () => {
        calls++;
        throw new StoreError(kind, kind);
      },
      0,
      10,
      'test',
    );
    t.match(await collect(read).catch((err: unknown) => err), { kind }, kind);
    t.equal(calls, requests, `${kind}: ${requests} request(s)`);
  }
});

t.test('a reader that stops early drops the connection', async (t) => {
  let destroyed = 0;
  const read = resumingRange(async () => body(randomBytes(1000), 100, undefined, () => destroyed++), 0, 1000, 'test');
  for await (const chunk of read) {
    t.equal(chunk.length, 100);
    break;
  }
  t.equal(destroyed, 1, 'the body is destroyed unread');
});
