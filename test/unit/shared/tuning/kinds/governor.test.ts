import { describe, expect, it } from 'vitest';
import { governor } from '../../../../../src/shared/tuning/kinds/governor.js';
import { FakeSystem, logRecorder } from '../../../../helpers/fake-node-system.js';

const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };
const CPU = '/sys/devices/system/cpu';
const pi = (governors: string[], unwritable: Record<string, string> = {}) =>
  new FakeSystem({
    dirs: { [CPU]: [...governors.map((_, i) => `cpu${i}`), 'cpufreq', 'cpuidle'] },
    files: Object.fromEntries(governors.map((g, i) => [`${CPU}/cpu${i}/cpufreq/scaling_governor`, g])),
    unwritable,
  });

describe('CPU governor lever kind', () => {
  it('describes the governor and the unit that sets it', () => {
    expect(governor.describe('performance')).toBe('governor performance (pi-image-cpu-tuning.service)');
  });

  it('renders nothing into the image', () => {
    expect(governor.render).toBeUndefined();
  });

  it('applies the first lever’s governor to every CPU with cpufreq, on --cpu only', async () => {
    const sys = pi(['ondemand', 'ondemand']);
    const { lines, log } = logRecorder();
    await governor.apply?.(['performance', 'powersave'], { sys, log, target: { cpu: true } });
    expect(sys.writes).toEqual([
      [`${CPU}/cpu0/cpufreq/scaling_governor`, 'performance'],
      [`${CPU}/cpu1/cpufreq/scaling_governor`, 'performance'],
    ]);
    expect(lines).toEqual(['governor performance on 2 cpus']);

    const other = pi(['ondemand']);
    await governor.apply?.(['performance'], { sys: other, log, target: { nic: 'eth0' } });
    expect(other.writes).toEqual([]);
  });

  it('says when a CPU refuses and when there is no cpufreq at all', async () => {
    const { lines, log } = logRecorder();
    await governor.apply?.(['performance'], { sys: pi(['ondemand', 'ondemand'], { [`${CPU}/cpu1/cpufreq/scaling_governor`]: 'EINVAL' }), log, target: { cpu: true } });
    await governor.apply?.(['performance'], { sys: new FakeSystem({ dirs: { [CPU]: ['cpu0'] } }), log, target: { cpu: true } });
    expect(lines).toEqual(['cpu1: governor performance failed: EINVAL', 'governor performance on 1 cpus', 'no cpufreq on this machine: governor left alone']);
  });

  it('checks every CPU’s governor: ok, drift (listing each one found), n/a without cpufreq', async () => {
    expect(await governor.check('performance', { sys: pi(['performance', 'performance']), state })).toEqual([
      { what: 'cpufreq governor', expected: 'performance', actual: 'performance', status: 'ok' },
    ]);
    expect(await governor.check('performance', { sys: pi(['performance', 'ondemand']), state })).toEqual([
      { what: 'cpufreq governor', expected: 'performance', actual: 'performance,ondemand', status: 'drift' },
    ]);
    expect(await governor.check('performance', { sys: new FakeSystem({ dirs: { [CPU]: ['cpu0'] } }), state })).toEqual([
      { what: 'cpufreq governor', expected: 'performance', actual: '-', status: 'n/a', reason: 'no cpufreq on this machine (a VM has none)' },
    ]);
  });
});
