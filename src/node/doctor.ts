import { join } from 'node:path';
import type { ResolvedLever, TuningState } from '../shared/tuning/levers.js';
import { ENGINE_UNIT } from '../shared/node-paths.js';
import { nicDriver, nicIrqs, nicPath, parseFeature, parseRingSizes, physicalNics, rxQueues } from './nic.js';
import { cpuMask, listDir, parseCpuList, parseMask, readText, run } from './sys.js';

export type Status = 'ok' | 'drift' | 'n/a' | 'disabled';

export interface Check {
  what: string;
  expected: string;
  actual: string;
  status: Status;
  reason?: string;
}

export interface LeverReport {
  id: string;
  purpose: string;
  status: Status;
  reason?: string;
  checks: Check[];
}

const ok = (what: string, expected: string, actual: string): Check => ({ what, expected, actual, status: 'ok' });
const compare = (what: string, expected: string, actual: string | undefined): Check =>
  actual === undefined
    ? { what, expected, actual: '(missing)', status: 'n/a', reason: `${what} does not exist on this machine` }
    : { what, expected, actual, status: norm(actual) === norm(expected) ? 'ok' : 'drift' };
const na = (what: string, expected: string, reason: string): Check => ({ what, expected, actual: '-', status: 'n/a', reason });
const norm = (s: string) => s.trim().replace(/\s+/g, ' ');

/** The engine unit's effective properties, as systemd resolves them (drop-ins included). */
async function engineProperties(): Promise<Map<string, string> | undefined> {
  const r = await run('systemctl', ['show', ENGINE_UNIT, '-p', 'CPUAffinity', '-p', 'LimitMEMLOCK', '-p', 'Nice', '-p', 'Environment', '-p', 'LoadState']);
  if (r.missing || r.code !== 0) return undefined;
  return new Map(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** systemd prints Environment= as space-separated assignments, quoting those with spaces. */
export function parseEnvironment(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const m of text.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) {
    const assignment = m[1] ?? m[2] ?? '';
    const eq = assignment.indexOf('=');
    if (eq > 0) env.set(assignment.slice(0, eq), assignment.slice(eq + 1));
  }
  return env;
}

async function checkNic(lever: ResolvedLever): Promise<Check[]> {
  const want = lever.apply.nic ?? {};
  const nics = await physicalNics();
  const nic = nics[0];
  if (!nic) return [na('nic', JSON.stringify(want), 'no physical Ethernet interface on this machine')];
  const checks: Check[] = [];
  const driver = await nicDriver(nic);
  if (want.gro) {
    const r = await run('ethtool', ['-k', nic]);
    if (r.missing) checks.push(na(`${nic} gro`, want.gro, 'ethtool is not installed'));
    else checks.push(compare(`${nic} generic-receive-offload`, want.gro, parseFeature(r.stdout, 'generic-receive-offload')));
  }
  if (want.rx_ring !== undefined) {
    const rings = parseRingSizes((await run('ethtool', ['-g', nic])).stdout);
    if (!rings) checks.push(na(`${nic} rx ring`, String(want.rx_ring), `driver ${driver} has no RX ring setting`));
    else checks.push(compare(`${nic} rx ring`, String(want.rx_ring === 'max' ? rings.max : Math.min(Number(want.rx_ring), rings.max)), String(rings.current)));
  }
  if (want.irq_cpus) {
    const irqs = await nicIrqs(nic);
    if (!irqs.length) checks.push(na(`${nic} irq affinity`, want.irq_cpus, `no interrupt line found for ${nic} (driver ${driver})`));
    for (const irq of irqs) {
      const actual = await readText(`/proc/irq/${irq}/smp_affinity_list`);
      checks.push(compare(`/proc/irq/${irq}/smp_affinity_list`, parseCpuList(want.irq_cpus).join(','), actual === undefined ? undefined : parseCpuList(actual).join(',')));
    }
  }
  const queues = await rxQueues(nic);
  if (want.rps_cpus) {
    const expected = cpuMask(parseCpuList(want.rps_cpus));
    if (!queues.length) checks.push(na(`${nic} rps_cpus`, expected, `${nic} has no rx queues in sysfs`));
    for (const q of queues) {
      const actual = await readText(join(q, 'rps_cpus'));
      checks.push(compare(`${q}/rps_cpus`, expected, actual === undefined ? undefined : parseMask(actual).toString(16)));
    }
  }
  if (want.rps_flow_entries !== undefined) {
    checks.push(compare('/proc/sys/net/core/rps_sock_flow_entries', String(want.rps_flow_entries), await readText('/proc/sys/net/core/rps_sock_flow_entries')));
  }
  for (const key of ['napi_defer_hard_irqs', 'gro_flush_timeout'] as const) {
    if (want[key] !== undefined) checks.push(compare(nicPath(nic, key), String(want[key]), await readText(nicPath(nic, key))));
  }
  return checks;
}

async function checkLever(lever: ResolvedLever, state: TuningState): Promise<Check[]> {
  const a = lever.apply;
  const checks: Check[] = [];
  for (const [key, value] of Object.entries(a.sysctl ?? {})) {
    checks.push(compare(`sysctl ${key}`, String(value), await readText(`/proc/sys/${key.replace(/\./g, '/')}`)));
  }
  for (const module of a.modules ?? []) {
    const loaded = (await listDir(`/sys/module/${module}`)).length > 0;
    checks.push({ what: `module ${module}`, expected: 'loaded', actual: loaded ? 'loaded' : 'not loaded', status: loaded ? 'ok' : 'drift' });
  }
  if (a.governor) {
    const cpus = (await listDir('/sys/devices/system/cpu')).filter((c) => /^cpu\d+$/.test(c));
    const governors = (await Promise.all(cpus.map((c) => readText(`/sys/devices/system/cpu/${c}/cpufreq/scaling_governor`)))).filter((g) => g !== undefined);
    if (!governors.length) checks.push(na('cpufreq governor', a.governor, 'no cpufreq on this machine (a VM has none)'));
    else checks.push(compare('cpufreq governor', a.governor, [...new Set(governors)].join(',')));
  }
  if (a.nic) checks.push(...(await checkNic(lever)));
  if (a.engine) {
    const props = await engineProperties();
    if (!props) checks.push(na(`${ENGINE_UNIT}`, JSON.stringify(a.engine), 'systemd is not available'));
    else {
      if (a.engine.CPUAffinity) checks.push(compare(`${ENGINE_UNIT} CPUAffinity`, parseCpuList(a.engine.CPUAffinity).join(','), parseCpuList(props.get('CPUAffinity') ?? '').join(',')));
      if (a.engine.LimitMEMLOCK) checks.push(compare(`${ENGINE_UNIT} LimitMEMLOCK`, a.engine.LimitMEMLOCK, props.get('LimitMEMLOCK')));
      if (a.engine.Nice !== undefined) checks.push(compare(`${ENGINE_UNIT} Nice`, String(a.engine.Nice), props.get('Nice')));
      const env = parseEnvironment(props.get('Environment') ?? '');
      for (const [k, v] of Object.entries(a.engine.Environment ?? {})) checks.push(compare(`${ENGINE_UNIT} Environment ${k}`, v, env.get(k) ?? ''));
      if (a.engine.Environment?.LD_PRELOAD) {
        const lib = a.engine.Environment.LD_PRELOAD;
        const present = (await readText(lib).catch(() => undefined)) !== undefined || (await run('test', ['-e', lib])).code === 0;
        checks.push({ what: `${lib} installed`, expected: 'present', actual: present ? 'present' : 'missing', status: present ? 'ok' : 'drift' });
      }
    }
  }
  if (a.eeprom) {
    const r = await run('vcgencmd', ['bootloader_config']);
    for (const [key, value] of Object.entries(a.eeprom)) {
      if (r.missing || r.code !== 0) checks.push(na(`bootloader ${key}`, String(value), 'no Raspberry Pi bootloader here (vcgencmd bootloader_config unavailable)'));
      else checks.push(compare(`bootloader ${key}`, String(value), new RegExp(`^${key}=(.*)$`, 'm').exec(r.stdout)?.[1] ?? '(unset)'));
    }
  }
  if (a.mask_timers) {
    if (!state.masked_timers.length) checks.push(na('timers', 'masked', 'the base system ships no timers'));
    const r = await run('systemctl', ['show', '-p', 'Id', '-p', 'LoadState', ...state.masked_timers]);
    const blocks = r.stdout.trim().split(/\n\s*\n/);
    state.masked_timers.forEach((timer, i) => {
      const load = /LoadState=(\S+)/.exec(blocks[i] ?? '')?.[1] ?? '(unknown)';
      checks.push({ what: `timer ${timer}`, expected: 'masked', actual: load, status: load === 'masked' ? 'ok' : 'drift' });
    });
  }
  if (a.forbid_config_txt) {
    const text = await readText('/boot/firmware/config.txt');
    if (text === undefined) checks.push(na('config.txt', 'no overclock keys', 'no /boot/firmware/config.txt on this board'));
    else {
      const bad = text.split('\n').filter((l) => a.forbid_config_txt?.some((k) => new RegExp(`^\\s*${k}(_\\w+)?\\s*=`).test(l)));
      checks.push(bad.length ? { what: 'config.txt', expected: 'no overclock keys', actual: bad.join('; '), status: 'drift' } : ok('config.txt', 'no overclock keys', 'none'));
    }
  }
  return checks;
}

function summarize(checks: Check[]): { status: Status; reason?: string } {
  if (checks.some((c) => c.status === 'drift')) return { status: 'drift' };
  if (checks.length && checks.every((c) => c.status === 'n/a')) return { status: 'n/a', reason: [...new Set(checks.map((c) => c.reason))].join('; ') };
  return { status: 'ok' };
}

export async function runDoctor(state: TuningState): Promise<LeverReport[]> {
  const reports: LeverReport[] = [];
  for (const lever of state.levers) {
    if (!lever.enabled) {
      reports.push({ id: lever.id, purpose: lever.purpose, status: 'disabled', reason: 'switched off in pi-image.yaml (tuning:)', checks: [] });
      continue;
    }
    if (!lever.onBoard) {
      reports.push({ id: lever.id, purpose: lever.purpose, status: 'n/a', reason: `for ${lever.boards.join(', ')}; this image is for ${state.board}`, checks: [] });
      continue;
    }
    const checks = await checkLever(lever, state);
    reports.push({ id: lever.id, purpose: lever.purpose, ...summarize(checks), checks });
  }
  return reports;
}

export function formatDoctor(reports: LeverReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`${r.status.padEnd(8)} ${r.id.padEnd(16)} ${r.purpose}${r.reason ? `  (${r.reason})` : ''}`);
    for (const c of r.checks) {
      if (c.status === 'ok' && r.status === 'ok') continue;
      lines.push(`           ${c.status.padEnd(6)} ${c.what}: expected ${c.expected}, actual ${c.actual}${c.reason ? ` (${c.reason})` : ''}`);
    }
  }
  const drift = reports.filter((r) => r.status === 'drift').length;
  lines.push('', drift ? `${drift} lever(s) drifted from the tuning profile` : 'no drift');
  return `${lines.join('\n')}\n`;
}
