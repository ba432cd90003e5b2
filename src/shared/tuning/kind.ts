import type { LeverApply, ResolvedLever, TuningState } from './levers.js';
import type { NodeSystem } from './system.js';

/** A lever kind is one key of a lever's apply section. */
export type KindKey = keyof LeverApply;
export type KindValue<K extends KindKey> = NonNullable<LeverApply[K]>;

/** One active lever that uses a kind, with its value for that kind. */
export interface LeverUse<K extends KindKey> {
  lever: ResolvedLever;
  value: KindValue<K>;
}

/** A file (or symlink) the build puts into the root filesystem. */
export interface GeneratedEntry {
  /** Relative to the root filesystem, no leading slash. */
  path: string;
  content?: string;
  mode?: number;
  /** A symlink instead of a file. */
  symlinkTo?: string;
}

export interface RenderContext {
  profile: string;
  /** Timer units of the base system. */
  timers: readonly string[];
}

/** One run of `pi-node apply-tuning`: --cpu, or --nic for one interface. */
export type ApplyTarget = { cpu: true } | { nic: string };

export type Log = (line: string) => void;

export interface ApplyContext {
  sys: NodeSystem;
  log: Log;
  target: ApplyTarget;
}

export interface CheckContext {
  sys: NodeSystem;
  /** The image's tuning.json (masked_timers is what the build masked). */
  state: TuningState;
}

export type Status = 'ok' | 'drift' | 'n/a' | 'disabled';

export interface Check {
  what: string;
  expected: string;
  actual: string;
  status: Status;
  reason?: string;
}

/**
 * Everything about one kind of lever: how `pi-image levers` describes it, what the build
 * writes into the image for it, how pi-node applies it at boot and how doctor checks it.
 */
export interface LeverKind<K extends KindKey> {
  readonly key: K;
  /** One phrase saying how a lever of this kind is applied. */
  describe(value: KindValue<K>): string;
  /** Fills in what follows from the lever's own values, once the user's value is in. */
  resolve?(value: KindValue<K>): KindValue<K>;
  /** Files for the image, from every active lever of this kind in profile order. Pure. */
  render?(uses: LeverUse<K>[], ctx: RenderContext): GeneratedEntry[];
  /**
   * Applies at boot what no file in the image can hold, from the values of every active
   * lever of this kind in profile order; a target that is not this kind's is left alone.
   */
  apply?(values: KindValue<K>[], ctx: ApplyContext): Promise<void>;
  /** Compares one lever's value with the running machine. */
  check(value: KindValue<K>, ctx: CheckContext): Promise<Check[]>;
}

/** The first line of every generated file. */
export const generatedHeader = (profile: string) => `# pi-image tuning profile ${profile}. Generated: change tuning: in pi-image.yaml, not this file.`;

/** k1=v1, k2=v2 */
export const assignments = (values: Record<string, string | number>) =>
  Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

const norm = (s: string) => s.trim().replace(/\s+/g, ' ');

export const ok = (what: string, expected: string, actual: string): Check => ({ what, expected, actual, status: 'ok' });

export const na = (what: string, expected: string, reason: string): Check => ({ what, expected, actual: '-', status: 'n/a', reason });

/** ok when equal up to white space, drift when not, n/a when the machine has no such setting. */
export const compare = (what: string, expected: string, actual: string | undefined): Check =>
  actual === undefined
    ? { what, expected, actual: '(missing)', status: 'n/a', reason: `${what} does not exist on this machine` }
    : { what, expected, actual, status: norm(actual) === norm(expected) ? 'ok' : 'drift' };

/** ok when the condition holds, else drift. */
export const presence = (what: string, expected: string, missing: string, holds: boolean): Check => ({
  what,
  expected,
  actual: holds ? expected : missing,
  status: holds ? 'ok' : 'drift',
});
