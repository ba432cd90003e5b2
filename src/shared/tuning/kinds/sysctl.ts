import { assignments, compare, generatedHeader, type Check, type LeverKind } from '../kind.js';

const SYSCTL_CONF = 'etc/sysctl.d/90-pi-image-tuning.conf';

/** Kernel parameters: a sysctl.d file, applied by systemd-sysctl at boot. */
export const sysctl: LeverKind<'sysctl'> = {
  key: 'sysctl',
  describe: (values) => `sysctl ${assignments(values)}`,
  render(uses, { profile }) {
    if (!uses.length) return [];
    const lines = [generatedHeader(profile)];
    for (const { lever, value } of uses) {
      lines.push('', `# ${lever.id}: ${lever.purpose}`, ...Object.entries(value).map(([k, v]) => `${k} = ${v}`));
    }
    return [{ path: SYSCTL_CONF, content: `${lines.join('\n')}\n` }];
  },
  async check(values, { sys }) {
    const checks: Check[] = [];
    for (const [key, value] of Object.entries(values)) {
      checks.push(compare(`sysctl ${key}`, String(value), await sys.readText(`/proc/sys/${key.replace(/\./g, '/')}`)));
    }
    return checks;
  },
};
