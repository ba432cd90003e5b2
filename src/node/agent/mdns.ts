import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../atomic-write.js';
import { run } from '../sys.js';

const AVAHI_HOSTS = '/etc/avahi/hosts';
const MARK = '# pi-image cluster name';

/**
 * The root answers mDNS for `<cluster>.local` (besides its own host name): a static entry in
 * avahi-daemon's hosts file, which avahi publishes as an A record.
 */
export async function publishClusterName(cluster: string, address: string, log: (line: string) => void): Promise<void> {
  const current = await readFile(AVAHI_HOSTS, 'utf8').catch(() => '');
  const kept = current.split('\n').filter((l) => !l.endsWith(MARK) && l !== '');
  const next = [...kept, `${address} ${cluster}.local ${MARK}`, ''].join('\n');
  if (next === current) return;
  await writeFileAtomic(AVAHI_HOSTS, next);
  const reload = await run('avahi-daemon', ['--reload']);
  log(reload.code === 0 ? `mDNS: ${cluster}.local → ${address}` : `mDNS: avahi-daemon --reload failed: ${reload.stderr.trim()}`);
}
