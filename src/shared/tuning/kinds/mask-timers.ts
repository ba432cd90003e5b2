import type { LeverApply } from '../levers.js';
import { na, type Check, type LeverKind } from '../kind.js';

/** The timers the first active lever of this kind masks: every timer of the base system but those it keeps. */
export function maskedTimers(values: readonly NonNullable<LeverApply['mask_timers']>[], timers: readonly string[]): string[] {
  const quiet = values[0];
  return quiet ? timers.filter((t) => !(quiet.keep ?? []).includes(t)).sort() : [];
}

/** Timer units of the base system masked in the image (symlinks to /dev/null). */
export const maskTimers: LeverKind<'mask_timers'> = {
  key: 'mask_timers',
  describe: (m) => `masks every timer unit of the base system${m.keep?.length ? ` except ${m.keep.join(', ')}` : ''}`,
  render: (uses, { timers }) => maskedTimers(uses.map((u) => u.value), timers).map((timer) => ({ path: `etc/systemd/system/${timer}`, symlinkTo: '/dev/null' })),
  // What the build masked is in tuning.json: the base system's timers are not known here.
  async check(_, { sys, state }) {
    const timers = state.masked_timers;
    if (!timers.length) return [na('timers', 'masked', 'the base system ships no timers')];
    const r = await sys.run('systemctl', ['show', '-p', 'Id', '-p', 'LoadState', ...timers]);
    const blocks = r.stdout.trim().split(/\n\s*\n/);
    return timers.map((timer, i): Check => {
      const load = /LoadState=(\S+)/.exec(blocks[i] ?? '')?.[1] ?? '(unknown)';
      return { what: `timer ${timer}`, expected: 'masked', actual: load, status: load === 'masked' ? 'ok' : 'drift' };
    });
  },
};
