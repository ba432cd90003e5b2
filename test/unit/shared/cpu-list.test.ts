import { describe, expect, it } from 'vitest';
import { cpuMask, parseCpuList, parseMask } from '../../../src/shared/cpu-list.js';

describe('CPU lists', () => {
  it('reads ranges and single CPUs', () => {
    expect(parseCpuList('0-2,5')).toEqual([0, 1, 2, 5]);
    expect(parseCpuList(' 3 ')).toEqual([3]);
    expect(parseCpuList('')).toEqual([]);
  });

  it('writes and reads sysfs hex masks', () => {
    expect(cpuMask([3])).toBe('8');
    expect(cpuMask([0, 1, 2])).toBe('7');
    expect(parseMask('00000000,00000008')).toBe(8n);
    expect(parseMask('')).toBe(0n);
  });
});
