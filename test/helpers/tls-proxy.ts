/**
 * A TLS-terminating proxy in its own process, for tests of private endpoints: accepts TLS on
 * 127.0.0.1 with the given certificate and passes the bytes to a plain TCP port. Started with
 * fork(); tells its port over IPC.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer } from 'node:tls';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { cert: { type: 'string' }, key: { type: 'string' }, 'target-port': { type: 'string' } } });
const server = createServer({ cert: readFileSync(values.cert!), key: readFileSync(values.key!) }, (client) => {
  const upstream = connect(Number(values['target-port']), '127.0.0.1');
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
// A client that refuses the certificate ends the handshake: nothing to do.
server.on('tlsClientError', () => undefined);
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send?.({ port: typeof address === 'object' && address ? address.port : 0 });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
