/** An https endpoint signed by a private CA, trusted through AWS_CA_BUNDLE or a profile's ca_bundle. */
import { execFileSync, fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { runCli } from '../helpers/cli';
import { mountS3, mountpointDir, tempDir } from '../helpers/mount';
import { BUCKET, startS3 } from '../helpers/s3';

/** A CA and a certificate for 127.0.0.1 it signed, made with openssl for this test. */
function makeCertificates(t: Test): { ca: string; cert: string; key: string } {
  const dir = tempDir(t, 'pki');
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2', '-subj', '/CN=stagefs test CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('server.pem'), '-days', '2', '-extfile', file('ext.cnf'));
  return { ca: file('ca.pem'), cert: file('server.pem'), key: file('server.key') };
}

async function startTlsProxy(t: Test, cert: string, key: string, targetPort: number): Promise<string> {
  const proxy = fork(join(__dirname, '..', 'helpers', 'tls-proxy.js'), ['--cert', cert, '--key', key, '--target-port', String(targetPort)], { stdio: 'inherit' });
  t.teardown(() => void proxy.kill('SIGTERM'));
  const port = await new Promise<number>((resolve, reject) => {
    proxy.once('message', (message: { port: number }) => resolve(message.port));
    proxy.once('exit', (code) => reject(new Error(`the TLS proxy exited (${code})`)));
  });
  return `https://127.0.0.1:${port}`;
}

t.test('a private CA: refused without it, trusted through AWS_CA_BUNDLE, a profile, or --ca-bundle', async (t) => {
  const s3 = await startS3(t);
  await s3.store.put('iso/tools.iso', Buffer.from('over tls'));
  const pki = makeCertificates(t);
  const endpoint = await startTlsProxy(t, pki.cert, pki.key, s3.server.port);
  const noBundle = { AWS_CA_BUNDLE: '', AWS_CONFIG_FILE: '/nonexistent' };

  const mountpoint = mountpointDir(t);
  const refused = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--endpoint', endpoint, '--cache-dir', tempDir(t, 'cache')], { ...s3.env, ...noBundle });
  t.equal(refused.code, 1, 'an untrusted certificate fails the mount');
  t.match(refused.stderr, /TLS certificate of s3:\/\/test at https:\/\/127\.0\.0\.1:\d+ does not verify against the built-in CAs; give yours with AWS_CA_BUNDLE/, 'saying what to do');
  t.equal(refused.stderr.trim().split('\n').length, 1, `in one line: ${refused.stderr.trim()}`);
  t.notOk(isStagefsMount(mountAt(mountpoint)), 'nothing is mounted');

  const viaEnv = await mountS3(t, s3, { engine: 'native', args: ['--endpoint', endpoint], env: { ...noBundle, AWS_CA_BUNDLE: pki.ca } });
  t.equal(await readFile(viaEnv.path('iso/tools.iso'), 'utf8'), 'over tls', 'AWS_CA_BUNDLE');
  t.ok(s3.gets('iso/tools.iso').length >= 1, 'the bytes came through the TLS endpoint');

  const config = join(tempDir(t, 'aws'), 'config');
  writeFileSync(config, `[profile lab]\nca_bundle = ${pki.ca}\naws_access_key_id = ${s3.env.AWS_ACCESS_KEY_ID}\naws_secret_access_key = ${s3.env.AWS_SECRET_ACCESS_KEY}\n`);
  const viaProfile = await mountS3(t, s3, { engine: 'native', args: ['--endpoint', endpoint], env: { ...noBundle, AWS_CONFIG_FILE: config, AWS_PROFILE: 'lab' } });
  t.equal(await readFile(viaProfile.path('iso/tools.iso'), 'utf8'), 'over tls', "the profile's ca_bundle");

  const viaFlag = await mountS3(t, s3, { engine: 'native', args: ['--endpoint', endpoint, '--ca-bundle', pki.ca], env: noBundle });
  t.equal(await readFile(viaFlag.path('iso/tools.iso'), 'utf8'), 'over tls', '--ca-bundle');

  const wrongCa = await runCli(['mount', `s3://${BUCKET}`, mountpointDir(t), '--endpoint', endpoint, '--cache-dir', tempDir(t, 'cache')], {
    ...s3.env,
    AWS_CA_BUNDLE: '/etc/ssl/certs/ca-certificates.crt',
  });
  t.match(wrongCa.stderr, /does not verify against the CAs of \/etc\/ssl\/certs\/ca-certificates\.crt \(AWS_CA_BUNDLE\)/, 'a bundle without the CA is named');
  const missing = await runCli(['mount', `s3://${BUCKET}`, mountpointDir(t), '--endpoint', endpoint, '--cache-dir', tempDir(t, 'cache')], {
    ...s3.env,
    AWS_CA_BUNDLE: '/nonexistent/ca.pem',
  });
  t.match(missing.stderr, /AWS_CA_BUNDLE: cannot read \/nonexistent\/ca\.pem \(ENOENT\)/, 'an unreadable bundle is named');
});
