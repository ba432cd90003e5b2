import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTuningProfile, resolveLevers } from '../../../../src/host/catalog/tuning-profiles.js';
import { forbiddenConfigTxtKeys, renderTuning } from '../../../../src/host/tuning/render.js';
import { REPO } from '../../../helpers/cli.js';

const GOLDEN = join(REPO, 'test/fixtures/tuning-golden');
const TIMERS = ['apt-daily-upgrade.timer', 'apt-daily.timer', 'dpkg-db-backup.timer', 'e2scrub_all.timer', 'fstrim.timer'];

/**
 * Every file the profile produces, compared with reviewed copies under
 * test/fixtures/tuning-golden/. UPDATE_GOLDEN=1 rewrites them (then review the diff).
 */
describe('tuning profile rendering', async () => {
  const profile = await loadTuningProfile('pi5-inference');
  for (const board of ['pi5', 'qemu']) {
    const files = renderTuning({ profile: profile.name, board, levers: resolveLevers(profile, board), timers: TIMERS });
    for (const file of files) {
      it(`${board}: /${file.path}`, () => {
        const golden = join(GOLDEN, board, file.symlinkTo ? `${file.path}.symlink` : file.path);
        const actual = file.symlinkTo ?? file.content ?? '';
        if (process.env.UPDATE_GOLDEN || !existsSync(golden)) {
          mkdirSync(dirname(golden), { recursive: true });
          writeFileSync(golden, actual);
          if (!process.env.UPDATE_GOLDEN) throw new Error(`no reviewed copy of ${file.path} yet: written to ${golden}, review and commit it`);
        }
        expect(actual).toBe(readFileSync(golden, 'utf8'));
      });
    }
  }

  it('derives the engine thread count from the engine CPUs the user sets', () => {
    const levers = resolveLevers(profile, 'pi5', { engine_cpus: '0-1' });
    const files = renderTuning({ profile: profile.name, board: 'pi5', levers, timers: TIMERS });
    const dropIn = files.find((f) => f.path === 'usr/lib/systemd/system/pi-image-engine.service.d/10-tuning.conf')?.content ?? '';
    expect(dropIn).toContain('\nCPUAffinity=0-1\nEnvironment="PI_IMAGE_ENGINE_THREADS=2"\n');
    expect(dropIn).not.toContain('PI_IMAGE_ENGINE_THREADS=3');
    const state = JSON.parse(files.find((f) => f.path === 'etc/pi-image/tuning.json')?.content ?? '{}');
    expect(state.levers.find((l: { id: string }) => l.id === 'engine_cpus').apply).toEqual({ engine: { CPUAffinity: '0-1', Environment: { PI_IMAGE_ENGINE_THREADS: '2' } } });
  });

  it("refuses a value outside the kernel's range, naming it", () => {
    expect(() => resolveLevers(profile, 'pi5', { swappiness: 250 })).toThrow(/tuning.swappiness: value 250 is out of range; it must be from 0 to 200/);
    expect(resolveLevers(profile, 'pi5', { swappiness: 200 }).find((l) => l.id === 'swappiness')?.value).toBe('200');
    expect(() => resolveLevers(profile, 'pi5', { swappiness: 'lots' })).toThrow(/must match/);
  });

  it('finds overclock keys in any section', () => {
    const levers = resolveLevers(profile, 'pi5');
    expect(forbiddenConfigTxtKeys(levers, { all: ['arm_64bit=1'], pi5: ['arm_freq=2800', 'over_voltage_delta=50000', 'dtparam=pciex1'] })).toEqual([
      { section: 'pi5', line: 'arm_freq=2800', lever: 'no_overclock' },
      { section: 'pi5', line: 'over_voltage_delta=50000', lever: 'no_overclock' },
    ]);
    expect(forbiddenConfigTxtKeys(resolveLevers(profile, 'pi5', { no_overclock: false }), { pi5: ['arm_freq=2800'] })).toEqual([]);
  });
});
