import { join } from 'node:path';
import { activeLevers, type LeverApply, type TuningState } from '../shared/tuning/levers.js';
import { nicIrqs, nicPath, parseRingSizes, rxQueues } from './nic.js';
import { cpuMask, listDir, parseCpuList, readText, run, writeText } from './sys.js';

type Log = (line: string) => void;

/** The NIC settings of every active lever, merged. */
export function nicSettings(state: TuningState): NonNullable<LeverApply['nic']> {
  return Object.assign({}, ...activeLevers(state.levers).map((l) => l.apply.nic ?? {}));
}

export function governorSetting(state: TuningState): string | undefined {
  return activeLevers(state.levers).find((l) => l.apply.governor)?.apply.governor;
}

async function waitForLinkUp(nic: string, log: Log, timeoutMs = 20_000): Promise<void> {
  // Runs once at boot from a oneshot unit: a short bounded wait, never a loop while serving.
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await readText(nicPath(nic, 'operstate'))) === 'up') return;
    await new Promise((r) => setTimeout(r, 250));
  }
  log(`${nic}: link not up after ${timeoutMs / 1000}s; applying anyway`);
}

export async function applyNicTuning(state: TuningState, nic: string, log: Log): Promise<void> {
  const s = nicSettings(state);
  await waitForLinkUp(nic, log);
  if (s.gro) {
    const r = await run('ethtool', ['-K', nic, 'gro', s.gro]);
    log(`${nic}: gro ${s.gro}${r.code ? ` failed: ${r.stderr.trim()}` : ''}`);
  }
  if (s.rx_ring !== undefined) {
    const rings = parseRingSizes((await run('ethtool', ['-g', nic])).stdout);
    if (!rings) log(`${nic}: driver has no RX ring setting`);
    else {
      const want = s.rx_ring === 'max' ? rings.max : Math.min(Number(s.rx_ring), rings.max);
      if (rings.current !== want) {
        const r = await run('ethtool', ['-G', nic, 'rx', String(want)]);
        log(`${nic}: rx ring ${want}${r.code ? ` failed: ${r.stderr.trim()}` : ''}`);
      }
    }
  }
  if (s.irq_cpus) {
    for (const irq of await nicIrqs(nic)) {
      const err = await writeText(`/proc/irq/${irq}/smp_affinity_list`, s.irq_cpus);
      log(`${nic}: irq ${irq} on cpus ${s.irq_cpus}${err ? ` failed: ${err}` : ''}`);
    }
  }
  const queues = await rxQueues(nic);
  if (s.rps_cpus) {
    const mask = cpuMask(parseCpuList(s.rps_cpus));
    for (const q of queues) {
      const err = await writeText(join(q, 'rps_cpus'), mask);
      if (err) log(`${q}/rps_cpus: ${err}`);
    }
  }
  if (s.rps_flow_entries !== undefined && queues.length) {
    await writeText('/proc/sys/net/core/rps_sock_flow_entries', String(s.rps_flow_entries));
    for (const q of queues) await writeText(join(q, 'rps_flow_cnt'), String(Math.floor(Number(s.rps_flow_entries) / queues.length)));
  }
  for (const key of ['napi_defer_hard_irqs', 'gro_flush_timeout'] as const) {
    if (s[key] === undefined) continue;
    const err = await writeText(nicPath(nic, key), String(s[key]));
    log(`${nic}: ${key} ${s[key]}${err ? ` failed: ${err}` : ''}`);
  }
}

export async function applyCpuTuning(state: TuningState, log: Log): Promise<void> {
  const governor = governorSetting(state);
  if (!governor) return;
  const cpus = (await listDir('/sys/devices/system/cpu')).filter((c) => /^cpu\d+$/.test(c));
  let applied = 0;
  for (const cpu of cpus) {
    const file = `/sys/devices/system/cpu/${cpu}/cpufreq/scaling_governor`;
    if ((await readText(file)) === undefined) continue;
    const err = await writeText(file, governor);
    if (err) log(`${cpu}: governor ${governor} failed: ${err}`);
    else applied++;
  }
  log(applied ? `governor ${governor} on ${applied} cpus` : 'no cpufreq on this machine: governor left alone');
}
