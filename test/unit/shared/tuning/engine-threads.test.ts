import { describe, expect, it } from 'vitest';
import { cpuAffinityCount, engineThreads } from '../../../../src/shared/tuning/engine-threads.js';
import { lever } from '../../../helpers/fake-node-system.js';

describe('engine threads', () => {
  it('one thread per CPU of the engine’s CPUAffinity, whatever the number of cores', () => {
    expect(engineThreads([lever('engine_cpus', { engine: { CPUAffinity: '0-2' } }), lever('memlock', { engine: { LimitMEMLOCK: 'infinity' } })], 4)).toBe(3);
    expect(engineThreads([lever('engine_cpus', { engine: { CPUAffinity: '0-1' } })], 4)).toBe(2);
  });

  it('merges the CPU sets of several levers, as systemd does', () => {
    expect(engineThreads([lever('a', { engine: { CPUAffinity: '0-1' } }), lever('b', { engine: { CPUAffinity: '1,3' } })], 8)).toBe(3);
  });

  it('every core but one when the engine is not pinned (lever off, not for this board, or none)', () => {
    expect(engineThreads([lever('engine_cpus', { engine: { CPUAffinity: '0-2' } }, { enabled: false })], 8)).toBe(7);
    expect(engineThreads([lever('engine_cpus', { engine: { CPUAffinity: '0-2' } }, { onBoard: false })], 4)).toBe(3);
    expect(engineThreads([], 2)).toBe(1);
    expect(engineThreads([], 1)).toBe(1);
  });

  it('counts only the pinned CPUs this machine has: a 1- or 2-CPU VM built with the Pi 5 profile', () => {
    const pinned = [lever('engine_cpus', { engine: { CPUAffinity: '1-3' } })];
    expect(engineThreads(pinned, 4)).toBe(3);
    expect(engineThreads(pinned, 2)).toBe(1);
    expect(engineThreads(pinned, 1)).toBe(1);
  });

  it('counts the CPUs of a CPUAffinity value', () => {
    expect(cpuAffinityCount('0-2')).toBe(3);
    expect(cpuAffinityCount('0-2,5')).toBe(4);
    expect(cpuAffinityCount('1,1')).toBe(1);
  });
});
