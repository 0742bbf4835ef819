/**
 * nfs-ganesha (FSAL_VFS) serving a directory over NFSv4 on a loopback port of its own, with its
 * own config, log and pid files; stopped in teardown. NFSv4 alone needs no rpcbind: ganesha
 * logs that it cannot register and serves anyway (with NFSv3 it would stop there).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { tempDir } from './mount';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const TOOLS_SOURCE = join(__dirname, '..', '..', '..', 'test', 'helpers');

export interface NfsExport {
  /** nfs://127.0.0.1/PSEUDO/RELATIVE?version=4&nfsport=PORT */
  url(relative: string): string;
  /** Writes a local file to the export (see nfs-put.c for why not nfs-cp). */
  put(relative: string, localFile: string): void;
  /** Reads a file of the export into a local file with nfs-cp. */
  get(relative: string, localFile: string): void;
  /** nfs-ls of a directory of the export: its entry names. */
  list(relative: string): string[];
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The ganesha config of the README's NFS section, for one export of `path`. */
export function ganeshaConfig(path: string, pseudo: string, port: number): string {
  return `NFS_CORE_PARAM {
    Protocols = 4;
    Enable_UDP = false;
    Bind_addr = 127.0.0.1;
    NFS_Port = ${port};
    Enable_NLM = false;
    Enable_RQUOTA = false;
}
NFSV4 {
    Graceless = true;
    Only_Numeric_Owners = true;
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
    Export_Id = 1;
    Path = ${path};
    Pseudo = ${pseudo};
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 4;
    Transports = TCP;
    FSAL { Name = VFS; }
}
`;
}

export async function exportOverNfs(t: Test, path: string): Promise<NfsExport> {
  for (const tool of ['ganesha.nfsd', 'nfs-cp', 'nfs-ls']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} is missing: npm test installs nfs-ganesha, nfs-ganesha-vfs, libnfs-utils and libnfs-dev (scripts/install-system-deps.sh)`);
    }
  }
  const dir = tempDir(t, 'ganesha');
  const putTool = join(dir, 'nfs-put');
  execFileSync('cc', ['-O1', '-Wall', '-o', putTool, join(TOOLS_SOURCE, 'nfs-put.c'), '-lnfs']);
  const port = await freePort();
  const config = join(dir, 'ganesha.conf');
  const log = join(dir, 'ganesha.log');
  writeFileSync(config, ganeshaConfig(path, '/stagefs', port));
  const daemon = spawn('ganesha.nfsd', ['-F', '-L', log, '-f', config, '-p', join(dir, 'ganesha.pid')], { stdio: 'ignore' });
  const logText = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  const stop = async () => {
    if (daemon.exitCode !== null || daemon.signalCode !== null) return;
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    const timer = setTimeout(() => daemon.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!logText().includes('NFS SERVER INITIALIZED')) {
    if (daemon.exitCode !== null) throw new Error(`ganesha.nfsd exited with ${daemon.exitCode}:\n${logText().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`ganesha.nfsd did not start within ${START_TIMEOUT_MS / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const url = (relative: string) => `nfs://127.0.0.1/stagefs/${relative}?version=4&nfsport=${port}`;
  const run = (file: string, args: string[]) => execFileSync(file, args, { encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    url,
    put: (relative, localFile) => void run(putTool, [url(relative), localFile]),
    get: (relative, localFile) => void run('nfs-cp', [url(relative), localFile]),
    list: (relative) =>
      run('nfs-ls', [url(relative)])
        .split('\n')
        .filter(Boolean)
        .map((line) => line.trim().split(/\s+/).pop()!),
    stop,
  };
}
