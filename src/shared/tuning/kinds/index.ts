import { activeLevers, type LeverApply, type ResolvedLever } from '../levers.js';
import type { ApplyContext, Check, CheckContext, GeneratedEntry, KindKey, KindValue, LeverKind, RenderContext } from '../kind.js';
import { eeprom } from './eeprom.js';
import { engine } from './engine.js';
import { forbidConfigTxt } from './forbid-config-txt.js';
import { governor } from './governor.js';
import { maskTimers } from './mask-timers.js';
import { modules } from './modules.js';
import { nic } from './nic.js';
import { sysctl } from './sysctl.js';

/** One kind per key of a lever's apply section; the order is the order of every output. */
const BY_KEY: { readonly [K in KindKey]-?: LeverKind<K> } = {
  sysctl,
  modules,
  governor,
  nic,
  engine,
  eeprom,
  mask_timers: maskTimers,
  forbid_config_txt: forbidConfigTxt,
};

export const LEVER_KINDS: readonly LeverKind<KindKey>[] = Object.values(BY_KEY);

/** The values of one kind in the given levers, in profile order. */
export function kindValues<K extends KindKey>(levers: readonly ResolvedLever[], key: K): KindValue<K>[] {
  return levers.flatMap((l) => (l.apply[key] === undefined ? [] : [l.apply[key] as KindValue<K>]));
}

const valueIn = (apply: LeverApply, kind: LeverKind<KindKey>) => apply[kind.key] as KindValue<KindKey> | undefined;

/** One line saying how a lever is applied, from its apply section. */
export function describeApply(apply: LeverApply): string {
  return LEVER_KINDS.flatMap((kind) => {
    const value = valueIn(apply, kind);
    return value === undefined ? [] : [kind.describe(value)];
  }).join('; ');
}

/** A lever's apply section with what each kind derives filled in. */
export function resolveApply(apply: LeverApply): LeverApply {
  const resolved: Record<string, unknown> = { ...apply };
  for (const kind of LEVER_KINDS) {
    const value = valueIn(apply, kind);
    if (value !== undefined && kind.resolve) resolved[kind.key] = kind.resolve(value);
  }
  return resolved as LeverApply;
}

/** Every file the active levers put into the image, kind by kind. */
export function renderLevers(levers: readonly ResolvedLever[], ctx: RenderContext): GeneratedEntry[] {
  const active = activeLevers(levers);
  return LEVER_KINDS.flatMap((kind) => {
    const uses = active.flatMap((lever) => {
      const value = valueIn(lever.apply, kind);
      return value === undefined ? [] : [{ lever, value }];
    });
    return kind.render?.(uses, ctx) ?? [];
  });
}

/** Applies, for one run of `pi-node apply-tuning`, every kind that has something to apply. */
export async function applyLevers(levers: readonly ResolvedLever[], ctx: ApplyContext): Promise<void> {
  const active = activeLevers(levers);
  for (const kind of LEVER_KINDS) {
    const values = kindValues(active, kind.key);
    if (values.length) await kind.apply?.(values, ctx);
  }
}

/** Compares one lever with the running machine, kind by kind. */
export async function checkLever(lever: ResolvedLever, ctx: CheckContext): Promise<Check[]> {
  const checks: Check[] = [];
  for (const kind of LEVER_KINDS) {
    const value = valueIn(lever.apply, kind);
    if (value !== undefined) checks.push(...(await kind.check(value, ctx)));
  }
  return checks;
}
