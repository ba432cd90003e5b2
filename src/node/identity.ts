import { createHash } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { readText } from './sys.js';

/**
 * A node's id: from the board's serial number (Raspberry Pi: in the device tree), so a
 * re-flashed card on the same board comes back as the same node; where there is none (a VM),
 * from the machine-id, which is made fresh on each card's first boot. Never from the hostname.
 */
export async function nodeId(root = ''): Promise<{ id: string; from: 'board serial' | 'machine-id' }> {
  const serial = (await readText(`${root}/sys/firmware/devicetree/base/serial-number`))?.replace(/\0/g, '');
  if (serial && !/^0+$/.test(serial)) return { id: digest(`serial:${serial}`), from: 'board serial' };
  const machineId = await readText(`${root}/etc/machine-id`);
  if (!machineId || !/^[0-9a-f]{32}$/.test(machineId)) throw new Error('this node has neither a board serial number nor a machine-id yet');
  return { id: digest(`machine-id:${machineId}`), from: 'machine-id' };
}

const digest = (text: string) => createHash('sha256').update(`pi-image-node\0${text}`).digest('hex').slice(0, 16);

const shortId = (id: string) => id.slice(0, 6);

export const clusterHostname = (cluster: string, id: string) => `${cluster}-${shortId(id)}`;

/** The node's IPv4 addresses on wired/wireless links: routable ones first, link-local (169.254/16) last. */
export function lanAddresses(): { address: string; netmask: string; broadcast: string }[] {
  const found: { address: string; netmask: string; broadcast: string }[] = [];
  for (const [name, infos] of Object.entries(networkInterfaces())) {
    if (name === 'lo') continue;
    for (const info of infos ?? []) {
      if (info.family !== 'IPv4' || info.internal) continue;
      found.push({ address: info.address, netmask: info.netmask, broadcast: broadcastOf(info.address, info.netmask) });
    }
  }
  const linkLocal = (a: string) => a.startsWith('169.254.');
  return found.sort((a, b) => Number(linkLocal(a.address)) - Number(linkLocal(b.address)) || a.address.localeCompare(b.address));
}

export function broadcastOf(address: string, netmask: string): string {
  const a = address.split('.').map(Number);
  const m = netmask.split('.').map(Number);
  return a.map((octet, i) => (octet | (~(m[i] as number) & 255)) & 255).join('.');
}

const toNumber = (ip: string) => ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);

export function sameSubnet(a: string, b: string, netmask: string): boolean {
  const mask = toNumber(netmask);
  return ((toNumber(a) & mask) >>> 0) === ((toNumber(b) & mask) >>> 0);
}
