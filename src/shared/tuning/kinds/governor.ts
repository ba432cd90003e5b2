import type { NodeSystem } from '../system.js';
import { compare, na, type LeverKind } from '../kind.js';

const CPU_DIR = '/sys/devices/system/cpu';

/** The cpufreq governor file of every CPU that has one (a VM has none). */
async function governorFiles(sys: NodeSystem): Promise<{ cpu: string; file: string; current: string }[]> {
  const found = [];
  for (const cpu of (await sys.listDir(CPU_DIR)).filter((c) => /^cpu\d+$/.test(c))) {
    const file = `${CPU_DIR}/${cpu}/cpufreq/scaling_governor`;
    const current = await sys.readText(file);
    if (current !== undefined) found.push({ cpu, file, current });
  }
  return found;
}

/** The CPU frequency governor: no file can set it, so pi-node writes it at boot (--cpu). */
export const governor: LeverKind<'governor'> = {
  key: 'governor',
  describe: (name) => `governor ${name} (pi-image-cpu-tuning.service)`,
  async apply(names, { sys, log, target }) {
    const name = names[0];
    if (!('cpu' in target) || name === undefined) return;
    let applied = 0;
    for (const { cpu, file } of await governorFiles(sys)) {
      const err = await sys.writeText(file, name);
      if (err) log(`${cpu}: governor ${name} failed: ${err}`);
      else applied++;
    }
    log(applied ? `governor ${name} on ${applied} cpus` : 'no cpufreq on this machine: governor left alone');
  },
  async check(name, { sys }) {
    const governors = (await governorFiles(sys)).map((g) => g.current);
    if (!governors.length) return [na('cpufreq governor', name, 'no cpufreq on this machine (a VM has none)')];
    return [compare('cpufreq governor', name, [...new Set(governors)].join(','))];
  },
};
