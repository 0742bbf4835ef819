import t from 'tap';
import { Registry } from '../../src/metrics/registry';

t.test('the Prometheus text format', async (t) => {
  const registry = new Registry();
  const requests = registry.counter('app_requests_total', 'Requests.');
  const latency = registry.histogram('app_latency_seconds', 'Latency.', [0.1, 1]);
  let staged = 5;
  registry.gauge('app_staged_bytes', 'Staged "bytes".', () => staged);
  registry.counterFrom('app_ops_total', 'Ops.', () => [{ labels: { op: 'read' }, value: 3 }]);
  requests.inc({ op: 'get' });
  requests.inc({ op: 'get' }, 2);
  requests.inc({ op: 'put' });
  latency.observe({ op: 'get' }, 0.05);
  latency.observe({ op: 'get' }, 0.5);
  latency.observe({ op: 'get' }, 7);
  staged = 9;
  t.equal(
    registry.render(),
    [
      '# HELP app_requests_total Requests.',
      '# TYPE app_requests_total counter',
      'app_requests_total{op="get"} 3',
      'app_requests_total{op="put"} 1',
      '# HELP app_latency_seconds Latency.',
      '# TYPE app_latency_seconds histogram',
      'app_latency_seconds_bucket{op="get",le="0.1"} 1',
      'app_latency_seconds_bucket{op="get",le="1"} 2',
      'app_latency_seconds_bucket{op="get",le="+Inf"} 3',
      'app_latency_seconds_sum{op="get"} 7.55',
      'app_latency_seconds_count{op="get"} 3',
      '# HELP app_staged_bytes Staged "bytes".',
      '# TYPE app_staged_bytes gauge',
      'app_staged_bytes 9',
      '# HELP app_ops_total Ops.',
      '# TYPE app_ops_total counter',
      'app_ops_total{op="read"} 3',
      '',
    ].join('\n'),
  );
});

t.test('label values are escaped', async (t) => {
  const registry = new Registry();
  registry.gauge('x', 'X.', () => [{ labels: { path: 'a"b\\c\nd' }, value: 1 }]);
  t.match(registry.render(), /x\{path="a\\"b\\\\c\\nd"\} 1/);
});
