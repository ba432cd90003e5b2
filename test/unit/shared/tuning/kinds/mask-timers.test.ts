import { describe, expect, it } from 'vitest';
import { maskedTimers, maskTimers } from '../../../../../src/shared/tuning/kinds/mask-timers.js';
import { FakeSystem, lever } from '../../../../helpers/fake-node-system.js';

const TIMERS = ['fstrim.timer', 'apt-daily.timer', 'e2scrub_all.timer'];
const stateWith = (masked: string[]) => ({ profile: 'p', board: 'pi5', levers: [], masked_timers: masked });

describe('masked timers lever kind', () => {
  it('describes what it masks', () => {
    expect(maskTimers.describe({ keep: [] })).toBe('masks every timer unit of the base system');
    expect(maskTimers.describe({ keep: ['fstrim.timer'] })).toBe('masks every timer unit of the base system except fstrim.timer');
  });

  it('masks every timer of the base system but those the first lever keeps, sorted', () => {
    expect(maskedTimers([{ keep: ['fstrim.timer'] }, { keep: ['apt-daily.timer'] }], TIMERS)).toEqual(['apt-daily.timer', 'e2scrub_all.timer']);
    expect(maskedTimers([{}], TIMERS)).toEqual(['apt-daily.timer', 'e2scrub_all.timer', 'fstrim.timer']);
    expect(maskedTimers([], TIMERS)).toEqual([]);
  });

  it('renders a /dev/null symlink per masked timer', () => {
    expect(maskTimers.render?.([{ lever: lever('quiet_node', {}), value: { keep: ['fstrim.timer'] } }], { profile: 'p', timers: TIMERS })).toEqual([
      { path: 'etc/systemd/system/apt-daily.timer', symlinkTo: '/dev/null' },
      { path: 'etc/systemd/system/e2scrub_all.timer', symlinkTo: '/dev/null' },
    ]);
  });

  it('checks that each timer the build masked is still masked', async () => {
    const sys = new FakeSystem({ commands: { 'systemctl show -p Id -p LoadState apt-daily.timer fstrim.timer': { stdout: 'Id=apt-daily.timer\nLoadState=masked\n\nId=fstrim.timer\nLoadState=loaded\n' } } });
    expect(await maskTimers.check({ keep: [] }, { sys, state: stateWith(['apt-daily.timer', 'fstrim.timer']) })).toEqual([
      { what: 'timer apt-daily.timer', expected: 'masked', actual: 'masked', status: 'ok' },
      { what: 'timer fstrim.timer', expected: 'masked', actual: 'loaded', status: 'drift' },
    ]);
  });

  it('checks: n/a when the base system had no timers', async () => {
    const sys = new FakeSystem();
    expect(await maskTimers.check({ keep: [] }, { sys, state: stateWith([]) })).toEqual([
      { what: 'timers', expected: 'masked', actual: '-', status: 'n/a', reason: 'the base system ships no timers' },
    ]);
    expect(sys.ran).toEqual([]);
  });
});
