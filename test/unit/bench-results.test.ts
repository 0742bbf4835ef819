import t from 'tap';
import { parseFioReport } from '../../bench/fio';
import { renderSummary } from '../../bench/report';
import { advantage, bestPeer, stagefsVsBestPeer, stagefsVsLimit, type BenchResults, type JobResult } from '../../bench/results';

const throughput: JobResult = {
  name: 'seq-read',
  title: '',
  unit: 'MB/s',
  higherIsBetter: true,
  phases: ['cold', 'warm', 'remounted'],
  bySystem: {
    stagefs: { cold: 200, warm: 3000, remounted: 1500 },
    s3fs: { cold: 100, warm: 400, remounted: 300 },
    rclone: { cold: 150 },
    'raw-s3': { cold: 400 },
    'local-disk': { warm: 3000, remounted: 3000 },
  },
};
const latency: JobResult = { ...throughput, name: 'first-byte', unit: 'ms', higherIsBetter: false, bySystem: { stagefs: { cold: 20 }, s3fs: { cold: 40 }, rclone: { cold: 30 } } };

t.test('ratios say how many times better stagefs does, whichever way the unit goes', async (t) => {
  t.equal(advantage(throughput, 200, 100), 2);
  t.equal(advantage(latency, 20, 40), 2);
  t.equal(advantage(latency, 20, undefined), undefined);
  t.same(bestPeer(throughput, 'cold'), { system: 'rclone', value: 150 });
  t.same(bestPeer(latency, 'cold'), { system: 'rclone', value: 30 });
  t.equal(stagefsVsBestPeer(throughput, 'cold')?.toFixed(3), '1.333');
  t.equal(stagefsVsBestPeer(throughput, 'warm'), 7.5, 'only peers that measured count');
  t.equal(stagefsVsLimit(throughput, 'cold'), 0.5, 'cold is held against raw S3');
  t.equal(stagefsVsLimit(throughput, 'warm'), 1, 'warm against local disk');
  t.equal(stagefsVsBestPeer(throughput, 'remounted'), 5, 'remounted against the peers remounted');
  t.equal(stagefsVsLimit(throughput, 'remounted'), 0.5, 'and against local disk');
});

t.test('fio reports are read past the notices fio prints first', async (t) => {
  const report = JSON.stringify({ jobs: [{ error: 0, read: { bw_bytes: 5e6, iops: 1220.5, io_bytes: 1e7 } }] });
  t.same(parseFioReport(`fio: opendir added 50 files\n${report}`), { bytesPerSecond: 5e6, iops: 1220.5, bytes: 1e7 });
  t.throws(() => parseFioReport('fio: no such file'), /fio printed no report/);
  const failed = JSON.stringify({ jobs: [{ error: 5, read: { bw_bytes: 0, iops: 0, io_bytes: 0 } }] });
  t.throws(() => parseFioReport(failed), /fio job failed with error 5/);
});

t.test('a phase that failed after the ones before it ran says so; the phases after it never ran', async (t) => {
  const failedRemount: JobResult = { ...throughput, bySystem: { stagefs: { cold: 200, warm: 3000, error: 'did not mount' }, s3fs: { error: 'no such bucket' } } };
  const rows = renderSummary({ jobs: [failedRemount] } as unknown as BenchResults).split('\n').map((row) => row.split(/\s+/));
  t.same(
    rows.map((row) => row.slice(0, 5)),
    [
      ['job', 'phase', 'unit', 'stagefs', 's3fs'],
      ['seq-read', 'cold', 'MB/s', '200', 'failed'],
      ['seq-read', 'warm', 'MB/s', '3,000', '–'],
      ['seq-read', 'remounted', 'MB/s', 'failed', '–'],
    ],
  );
});
