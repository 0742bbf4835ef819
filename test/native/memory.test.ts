import { execFile } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';

const SCRIPT = join(__dirname, '..', '..', '..', 'native', 'test', 'check-memory.sh');

t.test('the native session is clean under valgrind and AddressSanitizer', async (t) => {
  const { code, output } = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile(SCRIPT, ['--quick'], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as NodeJS.ErrnoException).code ?? 1) : 0, output: stdout + stderr });
    });
  });
  t.equal(code, 0, 'the checks pass');
  t.match(output, /passthrough off, fast-path hits [1-9]\d*, reader exit 0/, 'reads were served by the fast path');
  t.match(output, /passthrough on, fast-path hits 0, reader exit 0/, 'and in passthrough');
  t.match(output, /events closed, reader exit 2/, 'with the event channel gone, requests fail with EIO in C instead of hanging');
  t.match(output, /native memory check: clean/);
});
