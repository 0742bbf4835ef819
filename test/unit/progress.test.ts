import t from 'tap';
import { ProgressBar, type ProgressStream } from '../../src/cli/progress';

function terminal(columns: number): ProgressStream & { lines(): string[] } {
  let text = '';
  return {
    isTTY: true,
    columns,
    write: (chunk: string) => (text += chunk),
    // What stays on screen: each \r starts the line over, \x1b[K clears the rest.
    lines: () => text.split('\n').map((line) => line.split('\r').pop()!.replace(/\x1b\[K/g, '')),
  };
}

const GiB = 1024 ** 3;

t.test('progress lines fit the terminal', async (t) => {
  for (const columns of [120, 80, 60, 40, 24]) {
    const stream = terminal(columns);
    const bar = new ProgressBar('prefetch', stream);
    bar.update(1.5 * GiB, 12.25 * GiB);
    bar.update(7 * GiB, 12.25 * GiB);
    bar.finish(12.25 * GiB, 12.25 * GiB);
    for (const line of stream.lines()) t.ok(line.length < columns, `${columns} columns: '${line}' (${line.length})`);
    t.match(stream.lines()[0], /100%/, `${columns} columns: the last line keeps the percentage`);
  }
  const wide = terminal(200);
  new ProgressBar('prefetch', wide).finish(GiB, GiB);
  t.match(wide.lines()[0], /^prefetch \[#{24}\] 100% 1\.00 GiB \/ 1\.00 GiB \d+\.\d MiB\/s ETA 0s$/, 'the whole line where there is room');
});

t.test('a failed prefetch says so, never as a full bar', async (t) => {
  const stream = terminal(80);
  const bar = new ProgressBar('prefetch', stream);
  bar.finish(3 * GiB, 12 * GiB, 2);
  t.match(stream.lines()[0], /25% .* FAILED: 2 files$/);
  const nothing = terminal(80);
  new ProgressBar('prefetch', nothing).finish(0, 0, 1);
  t.match(nothing.lines()[0], /  0% 0 B \/ 0 B FAILED: 1 file$/, 'nothing to do and a failure is not 100%');
  t.notMatch(nothing.lines()[0], /100%/);
});
