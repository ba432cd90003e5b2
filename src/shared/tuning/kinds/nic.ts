import { join } from 'node:path';
import { cpuMask, parseCpuList, parseMask } from '../../cpu-list.js';
import type { LeverApply } from '../levers.js';
import { nicPath, type NodeSystem } from '../system.js';
import { assignments, compare, na, type Check, type LeverKind, type Log } from '../kind.js';

type NicSettings = NonNullable<LeverApply['nic']>;

export interface RingSizes {
  max: number;
  current: number;
}

/** Parses `ethtool -g`: the RX line under "Pre-set maximums" and under "Current hardware settings". */
export function parseRingSizes(text: string): RingSizes | undefined {
  const max = /Pre-set maximums:[\s\S]*?^RX:\s*(\d+)/m.exec(text)?.[1];
  const current = /Current hardware settings:[\s\S]*?^RX:\s*(\d+)/m.exec(text)?.[1];
  if (max === undefined || current === undefined) return undefined;
  return { max: Number(max), current: Number(current) };
}

/** Parses `ethtool -k` for one feature: "on", "off" (a trailing "[fixed]" is ignored). */
export function parseFeature(text: string, feature: string): string | undefined {
  return new RegExp(`^${feature}:\\s*(on|off)`, 'm').exec(text)?.[1];
}

/** The RX ring size a lever asks for on this NIC: "max" is the driver's maximum, a number is capped at it. */
export function rxRingSize(wanted: string | number, rings: RingSizes): number {
  return wanted === 'max' ? rings.max : Math.min(Number(wanted), rings.max);
}

const ringSizes = async (sys: NodeSystem, nic: string) => parseRingSizes((await sys.run('ethtool', ['-g', nic])).stdout);

const SOCK_FLOW_ENTRIES = '/proc/sys/net/core/rps_sock_flow_entries';
const NAPI_FILES = ['napi_defer_hard_irqs', 'gro_flush_timeout'] as const;

async function waitForLinkUp(sys: NodeSystem, nic: string, log: Log, timeoutMs = 20_000): Promise<void> {
  // Runs once at boot from a oneshot unit: a short bounded wait, never a loop while serving.
  const step = 250;
  for (let waited = 0; waited < timeoutMs; waited += step) {
    if ((await sys.readText(nicPath(nic, 'operstate'))) === 'up') return;
    await sys.sleep(step);
  }
  log(`${nic}: link not up after ${timeoutMs / 1000}s; applying anyway`);
}

/** NIC settings: ethtool and sysfs, which pi-node sets at boot on every physical interface (--nic). */
export const nic: LeverKind<'nic'> = {
  key: 'nic',
  describe: (settings) => `NIC ${assignments(settings)} (pi-image-nic-tuning.service)`,
  async apply(values, { sys, log, target }) {
    if (!('nic' in target)) return;
    const nic = target.nic;
    // Later levers win, as in a drop-in.
    const s: NicSettings = Object.assign({}, ...values);
    await waitForLinkUp(sys, nic, log);
    if (s.gro) {
      const r = await sys.run('ethtool', ['-K', nic, 'gro', s.gro]);
      log(`${nic}: gro ${s.gro}${r.code ? ` failed: ${r.stderr.trim()}` : ''}`);
    }
    if (s.rx_ring !== undefined) {
      const rings = await ringSizes(sys, nic);
      if (!rings) log(`${nic}: driver has no RX ring setting`);
      else {
        const size = rxRingSize(s.rx_ring, rings);
        if (rings.current !== size) {
          const r = await sys.run('ethtool', ['-G', nic, 'rx', String(size)]);
          log(`${nic}: rx ring ${size}${r.code ? ` failed: ${r.stderr.trim()}` : ''}`);
        }
      }
    }
    if (s.irq_cpus) {
      for (const irq of await sys.nicIrqs(nic)) {
        const err = await sys.writeText(`/proc/irq/${irq}/smp_affinity_list`, s.irq_cpus);
        log(`${nic}: irq ${irq} on cpus ${s.irq_cpus}${err ? ` failed: ${err}` : ''}`);
      }
    }
    const queues = await sys.rxQueues(nic);
    if (s.rps_cpus) {
      const mask = cpuMask(parseCpuList(s.rps_cpus));
      for (const q of queues) {
        const err = await sys.writeText(join(q, 'rps_cpus'), mask);
        if (err) log(`${q}/rps_cpus: ${err}`);
      }
    }
    if (s.rps_flow_entries !== undefined && queues.length) {
      await sys.writeText(SOCK_FLOW_ENTRIES, String(s.rps_flow_entries));
      for (const q of queues) await sys.writeText(join(q, 'rps_flow_cnt'), String(Math.floor(Number(s.rps_flow_entries) / queues.length)));
    }
    for (const key of NAPI_FILES) {
      if (s[key] === undefined) continue;
      const err = await sys.writeText(nicPath(nic, key), String(s[key]));
      log(`${nic}: ${key} ${s[key]}${err ? ` failed: ${err}` : ''}`);
    }
  },
  // Checks the first physical interface: the one the cluster traffic uses.
  async check(want, { sys }) {
    const nic = (await sys.physicalNics())[0];
    if (!nic) return [na('nic', JSON.stringify(want), 'no physical Ethernet interface on this machine')];
    const checks: Check[] = [];
    const driver = await sys.nicDriver(nic);
    if (want.gro) {
      const r = await sys.run('ethtool', ['-k', nic]);
      if (r.missing) checks.push(na(`${nic} gro`, want.gro, 'ethtool is not installed'));
      else checks.push(compare(`${nic} generic-receive-offload`, want.gro, parseFeature(r.stdout, 'generic-receive-offload')));
    }
    if (want.rx_ring !== undefined) {
      const rings = await ringSizes(sys, nic);
      if (!rings) checks.push(na(`${nic} rx ring`, String(want.rx_ring), `driver ${driver} has no RX ring setting`));
      else checks.push(compare(`${nic} rx ring`, String(rxRingSize(want.rx_ring, rings)), String(rings.current)));
    }
    if (want.irq_cpus) {
      const irqs = await sys.nicIrqs(nic);
      if (!irqs.length) checks.push(na(`${nic} irq affinity`, want.irq_cpus, `no interrupt line found for ${nic} (driver ${driver})`));
      for (const irq of irqs) {
        const file = `/proc/irq/${irq}/smp_affinity_list`;
        const actual = await sys.readText(file);
        checks.push(compare(file, parseCpuList(want.irq_cpus).join(','), actual === undefined ? undefined : parseCpuList(actual).join(',')));
      }
    }
    const queues = await sys.rxQueues(nic);
    if (want.rps_cpus) {
      const expected = cpuMask(parseCpuList(want.rps_cpus));
      if (!queues.length) checks.push(na(`${nic} rps_cpus`, expected, `${nic} has no rx queues in sysfs`));
      for (const q of queues) {
        const actual = await sys.readText(join(q, 'rps_cpus'));
        checks.push(compare(`${q}/rps_cpus`, expected, actual === undefined ? undefined : parseMask(actual).toString(16)));
      }
    }
    if (want.rps_flow_entries !== undefined) {
      checks.push(compare(SOCK_FLOW_ENTRIES, String(want.rps_flow_entries), await sys.readText(SOCK_FLOW_ENTRIES)));
    }
    for (const key of NAPI_FILES) {
      if (want[key] !== undefined) checks.push(compare(nicPath(nic, key), String(want[key]), await sys.readText(nicPath(nic, key))));
    }
    return checks;
  },
};
