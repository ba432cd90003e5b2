import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, ProfileError } from '../errors.js';
import { IMAGE_DIR } from '../paths.js';
import { readCatalogFile } from './catalog-file.js';
import type { ResolvedLever, TuningProfile } from '../../shared/tuning/levers.js';
import { resolveApply } from '../../shared/tuning/kinds/index.js';
import { didYouMean } from '../config/did-you-mean.js';

export type { LeverApply, LeverDefinition, ResolvedLever, TuningProfile } from '../../shared/tuning/levers.js';
export { activeLevers } from '../../shared/tuning/levers.js';

/** What pi-image.yaml may say per lever: false switches it off, a value replaces the default. */
export type TuningOverrides = Record<string, boolean | string | number>;

const TUNING_DIR = join(IMAGE_DIR, 'tuning');

export async function listTuningProfiles(): Promise<string[]> {
  return (await readdir(TUNING_DIR)).filter((n) => n.endsWith('.yaml')).map((n) => n.slice(0, -5)).sort();
}

export async function loadTuningProfile(name: string): Promise<TuningProfile> {
  const names = await listTuningProfiles();
  if (!names.includes(name)) throw new ConfigError(`unknown tuning profile "${name}"${didYouMean(name, names)}; available: ${names.join(', ')}`);
  const profile = (await readCatalogFile('tuning', join(TUNING_DIR, `${name}.yaml`), `tuning profile ${name}`)) as TuningProfile;
  const ids = profile.levers.map((l) => l.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new ProfileError(`tuning profile ${name}: lever "${dup}" is defined twice`);
  return profile;
}

/** Replaces {{value}} in every string of a lever's apply section. */
function substitute<T>(node: T, value: string | undefined): T {
  if (typeof node === 'string') return (value === undefined ? node : node.replaceAll('{{value}}', value)) as T;
  if (Array.isArray(node)) return node.map((n) => substitute(n, value)) as T;
  if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, substitute(v, value)])) as T;
  return node;
}

export function resolveLevers(profile: TuningProfile, board: string, overrides: TuningOverrides = {}): ResolvedLever[] {
  const known = new Set(profile.levers.map((l) => l.id));
  const problems: string[] = [];
  for (const id of Object.keys(overrides)) {
    if (!known.has(id)) problems.push(`unknown lever "${id}" in tuning:; levers of ${profile.name}: ${[...known].join(', ')}`);
  }
  const levers = profile.levers.map((lever) => {
    const override = overrides[lever.id];
    let value = lever.value === undefined ? undefined : String(lever.value);
    if (override !== undefined && typeof override !== 'boolean') {
      if (lever.value === undefined) problems.push(`tuning.${lever.id} takes no value, only true or false`);
      else if (lever.value_pattern && !new RegExp(lever.value_pattern).test(String(override))) {
        problems.push(`tuning.${lever.id}: value ${JSON.stringify(override)} is not allowed; it must match ${lever.value_pattern}`);
      } else if (lever.value_range && !(Number(override) >= lever.value_range[0] && Number(override) <= lever.value_range[1])) {
        problems.push(`tuning.${lever.id}: value ${JSON.stringify(override)} is out of range; it must be from ${lever.value_range[0]} to ${lever.value_range[1]}`);
      } else value = String(override);
    }
    return {
      id: lever.id,
      purpose: lever.purpose,
      effect: lever.effect,
      boards: lever.boards,
      enabled: override !== false,
      onBoard: lever.boards.includes(board),
      value,
      apply: resolveApply(substitute(lever.apply, value)),
    };
  });
  if (problems.length) throw new ConfigError(`invalid tuning settings:\n  - ${problems.join('\n  - ')}`, '`pi-image levers` lists every lever and its default');
  return levers;
}

