import type { LeverApply, ResolvedLever, TuningState } from '../../shared/tuning/levers.js';
import { ENGINE_UNIT, inRootfs, TUNING_STATE_PATH } from '../../shared/node-paths.js';
import { activeLevers } from '../../shared/tuning/levers.js';

export interface GeneratedEntry {
  path: string;
  content?: string;
  mode?: number;
  /** A symlink instead of a file. */
  symlinkTo?: string;
}

const HEADER = (profile: string) => `# pi-image tuning profile ${profile}. Generated: change tuning: in pi-image.yaml, not this file.`;

function collect<K extends keyof LeverApply>(levers: ResolvedLever[], key: K): { lever: ResolvedLever; value: NonNullable<LeverApply[K]> }[] {
  return levers.filter((l) => l.apply[key] !== undefined).map((l) => ({ lever: l, value: l.apply[key] as NonNullable<LeverApply[K]> }));
}

/**
 * Every file the tuning profile puts into the image. Only levers that are on and meant for
 * the board produce anything; a switched-off lever leaves no trace but its entry in
 * tuning.json (marked disabled, so doctor can say so).
 */
export function renderTuning(opts: { profile: string; board: string; levers: ResolvedLever[]; timers: string[] }): GeneratedEntry[] {
  const active = activeLevers(opts.levers);
  const files: GeneratedEntry[] = [];

  const sysctls = collect(active, 'sysctl');
  if (sysctls.length) {
    const lines = [HEADER(opts.profile)];
    for (const { lever, value } of sysctls) {
      lines.push('', `# ${lever.id}: ${lever.purpose}`, ...Object.entries(value).map(([k, v]) => `${k} = ${v}`));
    }
    files.push({ path: 'etc/sysctl.d/90-pi-image-tuning.conf', content: `${lines.join('\n')}\n` });
  }

  const modules = collect(active, 'modules').flatMap(({ value }) => value);
  if (modules.length) files.push({ path: 'etc/modules-load.d/pi-image-tuning.conf', content: `${HEADER(opts.profile)}\n${modules.join('\n')}\n` });

  // The governor and NIC levers are applied at boot by `pi-node apply-tuning` from tuning.json.

  const engine = collect(active, 'engine');
  if (engine.length) {
    const lines = [HEADER(opts.profile), '[Service]'];
    for (const { lever, value } of engine) {
      lines.push(`# ${lever.id}: ${lever.purpose}`);
      if (value.CPUAffinity) lines.push(`CPUAffinity=${value.CPUAffinity}`);
      if (value.LimitMEMLOCK) lines.push(`LimitMEMLOCK=${value.LimitMEMLOCK}`);
      if (value.Nice !== undefined) lines.push(`Nice=${value.Nice}`);
      for (const [k, v] of Object.entries(value.Environment ?? {})) lines.push(`Environment="${k}=${v}"`);
    }
    files.push({ path: `etc/systemd/system/${ENGINE_UNIT}.d/10-tuning.conf`, content: `${lines.join('\n')}\n` });
  }

  const quiet = collect(active, 'mask_timers')[0];
  const masked = quiet ? opts.timers.filter((t) => !(quiet.value.keep ?? []).includes(t)).sort() : [];
  for (const timer of masked) files.push({ path: `etc/systemd/system/${timer}`, symlinkTo: '/dev/null' });

  const state: TuningState = { profile: opts.profile, board: opts.board, levers: opts.levers, masked_timers: masked };
  files.push({ path: inRootfs(TUNING_STATE_PATH), content: `${JSON.stringify(state, null, 2)}\n` });
  return files;
}

/** config.txt keys a profile forbids (no overclock), found in composed sections. */
export function forbiddenConfigTxtKeys(levers: ResolvedLever[], sections: Record<string, string[]>): { section: string; line: string; lever: string }[] {
  const hits: { section: string; line: string; lever: string }[] = [];
  for (const { lever, value } of collect(activeLevers(levers), 'forbid_config_txt')) {
    for (const [section, lines] of Object.entries(sections)) {
      for (const line of lines) {
        const key = /^\s*([A-Za-z0-9_]+)\s*=/.exec(line)?.[1];
        if (key && value.some((k) => key === k || key.startsWith(`${k}_`))) hits.push({ section, line: line.trim(), lever: lever.id });
      }
    }
  }
  return hits;
}

/** Bootloader EEPROM settings the profile asks for (e.g. SDRAM_BANKLOW=1). */
export function eepromSettings(levers: ResolvedLever[]): Record<string, string> {
  return Object.fromEntries(collect(activeLevers(levers), 'eeprom').flatMap(({ value }) => Object.entries(value).map(([k, v]) => [k, String(v)])));
}
