import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { TEST_CACHE } from './cli.js';

/**
 * A real NTP server (chrony's chronyd, serving its own clock at stratum 8) on an emulated LAN,
 * so a test can show the nodes' timesyncd synchronising. chronyd is unpacked from Debian's
 * package, not installed: installing chrony would replace the host's own time daemon.
 */
async function chronyd(): Promise<string> {
  const dir = join(TEST_CACHE, 'tools/chrony');
  const binary = join(dir, 'usr/sbin/chronyd');
  if (existsSync(binary)) return binary;
  const download = `${dir}.partial`;
  rmSync(download, { recursive: true, force: true });
  mkdirSync(download, { recursive: true });
  try {
    await execa('apt-get', ['download', 'chrony'], { cwd: download });
  } catch (e) {
    throw new Error(`the time-server test needs chronyd from Debian's chrony package, and \`apt-get download chrony\` failed: ${(e as Error).message}`);
  }
  const deb = readdirSync(download).find((f) => f.endsWith('.deb')) as string;
  await execa('dpkg-deb', ['-x', join(download, deb), download]);
  rmSync(dir, { recursive: true, force: true });
  renameSync(download, dir);
  return binary;
}

export interface TimeServer {
  address: string;
  stop(): Promise<void>;
}

/** Starts chronyd inside `namespace`, on `address`/16 added to its bridge `br0`. */
export async function startTimeServer(namespace: string, address: string, workDir: string): Promise<TimeServer> {
  const binary = await chronyd();
  await execa('ip', ['netns', 'exec', namespace, 'ip', 'addr', 'add', `${address}/16`, 'dev', 'br0']);
  const conf = join(workDir, 'chrony.conf');
  // -x: never touch the host's clock; `local`: serve time although nothing upstream is reachable.
  writeFileSync(conf, ['local stratum 8', 'allow all', `bindaddress ${address}`, 'cmdport 0', `pidfile ${join(workDir, 'chronyd.pid')}`, ''].join('\n'));
  const server: ResultPromise = execa('ip', ['netns', 'exec', namespace, binary, '-d', '-x', '-u', 'root', '-f', conf], { reject: false, all: true });
  return {
    address,
    async stop() {
      server.kill();
      await server;
    },
  };
}
