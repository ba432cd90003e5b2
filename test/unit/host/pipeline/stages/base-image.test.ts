import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { workingCopy } from '../../../../../src/host/pipeline/stages/base-image.js';
import { silentReporter } from '../../../../../src/host/progress.js';

describe('base image working copy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pi-image-copy-'));
  const original = join(dir, 'disk.img');
  writeFileSync(original, Buffer.concat([randomBytes(4096), Buffer.alloc(1 << 20), randomBytes(100)]));

  for (const [tool, args, ext] of [['xz', ['-k', '-T0'], 'xz'], ['zstd', ['-q', '-k'], 'zst'], ['gzip', ['-k'], 'gz']] as const) {
    it(`recognises ${ext} by its magic bytes and decompresses it`, async () => {
      await execa(tool, [...args, '-f', original]);
      const target = join(dir, `out-${ext}.img`);
      await workingCopy(`${original}.${ext}`, target, silentReporter);
      expect(readFileSync(target).equals(readFileSync(original))).toBe(true);
    });
  }

  it('copies a plain image', async () => {
    const target = join(dir, 'out-plain.img');
    await workingCopy(original, target, silentReporter);
    expect(readFileSync(target).equals(readFileSync(original))).toBe(true);
  });
});
