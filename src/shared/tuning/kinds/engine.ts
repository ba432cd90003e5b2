import { parseCpuList } from '../../cpu-list.js';
import { ENGINE_UNIT } from '../../node-paths.js';
import { cpuAffinityCount, ENGINE_THREADS_ENV } from '../engine-threads.js';
import type { NodeSystem } from '../system.js';
import { compare, generatedHeader, na, presence, type Check, type LeverKind } from '../kind.js';

// A vendor drop-in beside the vendor unit: an admin's own in /etc/systemd/system/ still wins.
const ENGINE_DROP_IN = `usr/lib/systemd/system/${ENGINE_UNIT}.d/10-tuning.conf`;

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

/** The engine unit's effective properties, as systemd resolves them (drop-ins included). */
async function engineProperties(sys: NodeSystem): Promise<Map<string, string> | undefined> {
  const r = await sys.run('systemctl', ['show', ENGINE_UNIT, '-p', 'CPUAffinity', '-p', 'LimitMEMLOCK', '-p', 'Nice', '-p', 'Environment', '-p', 'LoadState']);
  if (r.missing || r.code !== 0) return undefined;
  return new Map(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Properties of the engine's systemd unit: one drop-in, from every active lever in profile order. */
export const engine: LeverKind<'engine'> = {
  key: 'engine',
  describe(e) {
    const props = [
      e.CPUAffinity && `CPUAffinity=${e.CPUAffinity}`,
      e.LimitMEMLOCK && `LimitMEMLOCK=${e.LimitMEMLOCK}`,
      e.Nice !== undefined && `Nice=${e.Nice}`,
      ...Object.entries(e.Environment ?? {}).map(([k, v]) => `${k}=${v}`),
    ].filter(Boolean);
    return `engine unit ${props.join(', ')}`;
  },
  // The thread count follows the CPU set, whatever value the user gave the set.
  resolve(e) {
    const count = e.CPUAffinity ? cpuAffinityCount(e.CPUAffinity) : 0;
    if (!count) return e;
    const { [ENGINE_THREADS_ENV]: _, ...rest } = e.Environment ?? {};
    return { ...e, Environment: { [ENGINE_THREADS_ENV]: String(count), ...rest } };
  },
  render(uses, { profile }) {
    if (!uses.length) return [];
    const lines = [generatedHeader(profile), '[Service]'];
    for (const { lever, value } of uses) {
      lines.push(`# ${lever.id}: ${lever.purpose}`);
      if (value.CPUAffinity) lines.push(`CPUAffinity=${value.CPUAffinity}`);
      if (value.LimitMEMLOCK) lines.push(`LimitMEMLOCK=${value.LimitMEMLOCK}`);
      if (value.Nice !== undefined) lines.push(`Nice=${value.Nice}`);
      for (const [k, v] of Object.entries(value.Environment ?? {})) lines.push(`Environment="${k}=${v}"`);
    }
    return [{ path: ENGINE_DROP_IN, content: `${lines.join('\n')}\n` }];
  },
  async check(e, { sys }) {
    const props = await engineProperties(sys);
    if (!props) return [na(ENGINE_UNIT, JSON.stringify(e), 'systemd is not available')];
    const checks: Check[] = [];
    const what = (property: string) => `${ENGINE_UNIT} ${property}`;
    if (e.CPUAffinity) checks.push(compare(what('CPUAffinity'), parseCpuList(e.CPUAffinity).join(','), parseCpuList(props.get('CPUAffinity') ?? '').join(',')));
    if (e.LimitMEMLOCK) checks.push(compare(what('LimitMEMLOCK'), e.LimitMEMLOCK, props.get('LimitMEMLOCK')));
    if (e.Nice !== undefined) checks.push(compare(what('Nice'), String(e.Nice), props.get('Nice')));
    const env = parseEnvironment(props.get('Environment') ?? '');
    for (const [k, v] of Object.entries(e.Environment ?? {})) checks.push(compare(what(`Environment ${k}`), v, env.get(k) ?? ''));
    const preload = e.Environment?.LD_PRELOAD;
    if (preload) {
      // readText fails on a library that exists but cannot be read by this user; test -e does not.
      const present = (await sys.readText(preload)) !== undefined || (await sys.run('test', ['-e', preload])).code === 0;
      checks.push(presence(`${preload} installed`, 'present', 'missing', present));
    }
    return checks;
  },
};
