import { describe, expect, it } from 'vitest';
import { forbidConfigTxt, forbiddenConfigTxtKeys, isForbiddenConfigTxtLine } from '../../../../../src/shared/tuning/kinds/forbid-config-txt.js';
import { FakeSystem, lever } from '../../../../helpers/fake-node-system.js';

const state = { profile: 'p', board: 'pi5', levers: [], masked_timers: [] };
const FORBIDDEN = ['arm_freq', 'over_voltage', 'gpu_freq'];

describe('forbidden config.txt keys', () => {
  it('matches a forbidden key and its variants (key_suffix)', () => {
    expect(isForbiddenConfigTxtLine('arm_freq=2800', FORBIDDEN)).toBe(true);
    expect(isForbiddenConfigTxtLine('arm_freq_min=1000', FORBIDDEN)).toBe(true);
    expect(isForbiddenConfigTxtLine('over_voltage_delta=50000', FORBIDDEN)).toBe(true);
    expect(isForbiddenConfigTxtLine('  gpu_freq = 1000', FORBIDDEN)).toBe(true);
  });

  it('does not match a key that merely starts with the same letters, a comment or a value', () => {
    expect(isForbiddenConfigTxtLine('arm_freqx=1', FORBIDDEN)).toBe(false);
    expect(isForbiddenConfigTxtLine('arm_64bit=1', FORBIDDEN)).toBe(false);
    expect(isForbiddenConfigTxtLine('#arm_freq=2800', FORBIDDEN)).toBe(false);
    expect(isForbiddenConfigTxtLine('dtparam=arm_freq=1', FORBIDDEN)).toBe(false);
    expect(isForbiddenConfigTxtLine('[pi5]', FORBIDDEN)).toBe(false);
    expect(isForbiddenConfigTxtLine('ARM_FREQ=2800', FORBIDDEN)).toBe(false);
  });

  it('finds them in composed sections, for active levers only', () => {
    const levers = [lever('no_overclock', { forbid_config_txt: FORBIDDEN }), lever('off', { forbid_config_txt: ['dtparam'] }, { enabled: false })];
    expect(forbiddenConfigTxtKeys(levers, { all: ['arm_64bit=1', 'dtparam=audio=on'], pi5: [' arm_freq=2800 ', 'arm_freqx=1'] })).toEqual([{ section: 'pi5', line: 'arm_freq=2800', lever: 'no_overclock' }]);
  });
});

describe('forbidden config.txt keys lever kind', () => {
  it('describes the keys', () => {
    expect(forbidConfigTxt.describe(['arm_freq', 'over_voltage'])).toBe('build fails on config.txt keys arm_freq, over_voltage');
  });

  it('renders nothing and applies nothing', () => {
    expect(forbidConfigTxt.render).toBeUndefined();
    expect(forbidConfigTxt.apply).toBeUndefined();
  });

  it('checks the boot partition’s config.txt', async () => {
    const clean = new FakeSystem({ files: { '/boot/firmware/config.txt': 'arm_64bit=1\narm_freqx=1\n#arm_freq=3000\n' } });
    const overclocked = new FakeSystem({ files: { '/boot/firmware/config.txt': '[pi5]\narm_freq=3000\nover_voltage_delta=50000\n' } });
    expect(await forbidConfigTxt.check(FORBIDDEN, { sys: clean, state })).toEqual([{ what: 'config.txt', expected: 'no overclock keys', actual: 'none', status: 'ok' }]);
    expect(await forbidConfigTxt.check(FORBIDDEN, { sys: overclocked, state })).toEqual([
      { what: 'config.txt', expected: 'no overclock keys', actual: 'arm_freq=3000; over_voltage_delta=50000', status: 'drift' },
    ]);
    expect(await forbidConfigTxt.check(FORBIDDEN, { sys: new FakeSystem(), state })).toEqual([
      { what: 'config.txt', expected: 'no overclock keys', actual: '-', status: 'n/a', reason: 'no /boot/firmware/config.txt on this board' },
    ]);
  });
});
