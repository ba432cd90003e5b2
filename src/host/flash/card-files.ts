import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { PiImageError } from '../errors.js';
import { addBootFiles } from '../disk/fat.js';
import { readPartitionTable } from '../disk/partition-table.js';
import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { isHostname, staticAddressProblem, type CardIdentity, type NodeFile } from '../../shared/card-identity.js';
import { parsePublicKeyLine } from '../../shared/ssh-key.js';
import { CARD_FILES } from '../../shared/node-paths.js';

/**
 * One card's identity as files on its boot partition: cloud-init's NoCloud files as Raspberry
 * Pi Imager writes them (`user-data`, `network-config`, `meta-data`) and pi-image's node file
 * with the role. The node's first boot applies them and wipes them off the FAT.
 */
export function renderCardFiles(identity: CardIdentity): Record<string, string> {
  const problem = identityProblem(identity);
  if (problem) throw new PiImageError(problem);
  const files: Record<string, string> = {};
  const userData: Record<string, unknown> = {};
  if (identity.hostname) userData.hostname = identity.hostname;
  if (identity.sshKeys.length) userData.ssh_authorized_keys = identity.sshKeys;
  files[CARD_FILES.userData] = `#cloud-config\n# Written by pi-image flash: applied and removed by the node's first boot.\n${stringify(userData)}`;
  if (identity.network) {
    const n = identity.network;
    const byMac = n.link.includes(':');
    const ethernet = {
      ...(byMac ? { match: { macaddress: n.link.toLowerCase() } } : {}),
      dhcp4: false,
      addresses: [n.address],
      ...(n.gateway ? { routes: [{ to: 'default', via: n.gateway }] } : {}),
      ...(n.dns.length ? { nameservers: { addresses: n.dns } } : {}),
    };
    files[CARD_FILES.networkConfig] = stringify({ network: { version: 2, ethernets: { [byMac ? 'lan' : n.link]: ethernet } } });
  }
  files[CARD_FILES.metaData] = stringify({ 'instance-id': `pi-image-${identity.hostname ?? 'node'}`, ...(identity.hostname ? { 'local-hostname': identity.hostname } : {}) });
  const node: NodeFile = { version: 1, ...(identity.hostname ? { name: identity.hostname } : {}), ...(identity.role ? { role: identity.role } : {}) };
  files[CARD_FILES.node] = `${JSON.stringify(node, null, 2)}\n`;
  return files;
}

/** Why a card identity given on the command line cannot be written, or undefined. */
export function identityProblem(identity: CardIdentity): string | undefined {
  if (identity.hostname !== undefined && !isHostname(identity.hostname)) return `--node ${JSON.stringify(identity.hostname)} is not a host name: letters, digits and inner hyphens, at most 63`;
  if (identity.role !== undefined && identity.role !== 'root' && identity.role !== 'worker') return `--role must be root or worker, not ${JSON.stringify(identity.role)}`;
  for (const key of identity.sshKeys) {
    const parsed = parsePublicKeyLine(key);
    if ('problem' in parsed) return `${JSON.stringify(key.slice(0, 40))}… is not an OpenSSH public key line: it ${parsed.problem}`;
  }
  if (identity.network) {
    const problem = staticAddressProblem(identity.network);
    if (problem) return `--address: ${problem}`;
  }
  return undefined;
}

/**
 * Writes a card's identity files into the FAT boot partition of a flashed card or image file
 * (mtools at the partition's offset: no mount), then flushes a block device's buffers.
 */
export async function writeCardFiles(target: string, identity: CardIdentity, opts: { block: boolean; reporter: Reporter }): Promise<string[]> {
  const files = renderCardFiles(identity);
  const table = await readPartitionTable(target, opts.reporter);
  const boot = table.partitions[0];
  if (!boot || !['b', 'c', 'e', 'ef'].includes(boot.type.replace(/^0x/, '').toLowerCase())) {
    throw new PiImageError(`${target} has no FAT boot partition first (found ${boot ? `type ${boot.type}` : 'no partition'}): cannot write the node's identity`, 'flash a pi-image image first');
  }
  const sector = table.sectorsize ?? 512;
  const staging = await mkdtemp(join(tmpdir(), 'pi-image-card-'));
  try {
    const byFolder = new Map<string, string[]>();
    for (const [name, content] of Object.entries(files)) {
      const local = join(staging, name);
      await mkdir(dirname(local), { recursive: true, mode: 0o700 });
      await writeFile(local, content, { mode: 0o600 });
      const folder = dirname(name) === '.' ? '' : dirname(name);
      byFolder.set(folder, [...(byFolder.get(folder) ?? []), local]);
    }
    for (const [folder, locals] of byFolder) await addBootFiles({ image: target, fatOffset: boot.start * sector, folder, files: locals, reporter: opts.reporter, stage: 'identity' });
    if (opts.block) await runTool('blockdev', ['--flushbufs', target], { stage: 'identity', reporter: opts.reporter });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return Object.keys(files);
}
