import { basename, join } from 'node:path';
import { realpath } from 'node:fs/promises';
import { SYS_CLASS_NET as NET } from '../shared/tuning/system.js';
import { listDir, readText } from './sys.js';

/** Physical Ethernet interfaces: backed by a device, ARP type 1 (bridges, veth and tunnels have no device link). */
export async function physicalNics(): Promise<string[]> {
  const nics: string[] = [];
  for (const name of await listDir(NET)) {
    if ((await readText(join(NET, name, 'type'))) !== '1') continue;
    if ((await listDir(join(NET, name, 'device'))).length === 0) continue;
    nics.push(name);
  }
  return nics;
}

export async function nicDriver(nic: string): Promise<string> {
  try {
    return basename(await realpath(join(NET, nic, 'device/driver')));
  } catch {
    return 'unknown';
  }
}

/**
 * The NIC's interrupt lines: MSI vectors of its PCI device (virtio's parent device for
 * virtio-net), else /proc/interrupts lines naming the interface or its device (macb).
 */
export async function nicIrqs(nic: string): Promise<number[]> {
  let device: string;
  try {
    device = await realpath(join(NET, nic, 'device'));
  } catch {
    return [];
  }
  for (const dir of [device, join(device, '..')]) {
    const msi = (await listDir(join(dir, 'msi_irqs'))).map(Number).filter((n) => Number.isInteger(n));
    if (msi.length) {
      // virtio's config-change vector is not on the data path; its queue vectors are named -input/-output.
      const names = await interruptNames();
      const data = msi.filter((irq) => !/config/.test(names.get(irq) ?? ''));
      return data.length ? data : msi;
    }
  }
  const names = await interruptNames();
  const wanted = [nic, basename(device)];
  return [...names.entries()].filter(([, name]) => wanted.some((w) => name.split(/\s+/).includes(w) || name.endsWith(w))).map(([irq]) => irq);
}

async function interruptNames(): Promise<Map<number, string>> {
  const text = (await readText('/proc/interrupts')) ?? '';
  const names = new Map<number, string>();
  for (const line of text.split('\n').slice(1)) {
    const m = /^\s*(\d+):(.*)$/.exec(line);
    if (!m) continue;
    const fields = (m[2] ?? '').trim().split(/\s+/);
    names.set(Number(m[1]), fields[fields.length - 1] ?? '');
  }
  return names;
}

export async function rxQueues(nic: string): Promise<string[]> {
  return (await listDir(join(NET, nic, 'queues'))).filter((q) => q.startsWith('rx-')).map((q) => join(NET, nic, 'queues', q));
}
