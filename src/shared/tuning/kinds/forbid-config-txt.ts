import { activeLevers, type ResolvedLever } from '../levers.js';
import { ok, na, type LeverKind } from '../kind.js';

const CONFIG_TXT = '/boot/firmware/config.txt';

/**
 * Whether a config.txt line sets a forbidden key: the key itself or one of its variants
 * (arm_freq forbids arm_freq_min too), not a key that merely starts with the same letters.
 */
export function isForbiddenConfigTxtLine(line: string, forbidden: readonly string[]): boolean {
  const key = /^\s*([A-Za-z0-9_]+)\s*=/.exec(line)?.[1];
  return key !== undefined && forbidden.some((k) => key === k || key.startsWith(`${k}_`));
}

/** config.txt keys the active levers forbid (no overclock), found in composed sections. */
export function forbiddenConfigTxtKeys(levers: readonly ResolvedLever[], sections: Record<string, string[]>): { section: string; line: string; lever: string }[] {
  const hits: { section: string; line: string; lever: string }[] = [];
  for (const lever of activeLevers(levers)) {
    const forbidden = lever.apply.forbid_config_txt;
    if (!forbidden) continue;
    for (const [section, lines] of Object.entries(sections)) {
      for (const line of lines) if (isForbiddenConfigTxtLine(line, forbidden)) hits.push({ section, line: line.trim(), lever: lever.id });
    }
  }
  return hits;
}

/** config.txt keys (overclock): the build refuses them, doctor looks for them on the boot partition. */
export const forbidConfigTxt: LeverKind<'forbid_config_txt'> = {
  key: 'forbid_config_txt',
  describe: (keys) => `build fails on config.txt keys ${keys.join(', ')}`,
  async check(keys, { sys }) {
    const text = await sys.readText(CONFIG_TXT);
    if (text === undefined) return [na('config.txt', 'no overclock keys', `no ${CONFIG_TXT} on this board`)];
    const bad = text.split('\n').filter((line) => isForbiddenConfigTxtLine(line, keys));
    return [bad.length ? { what: 'config.txt', expected: 'no overclock keys', actual: bad.join('; '), status: 'drift' } : ok('config.txt', 'no overclock keys', 'none')];
  },
};
