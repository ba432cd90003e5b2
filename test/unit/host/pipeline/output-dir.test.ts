import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { makeWorkDir, publish } from '../../../../src/host/pipeline/output-dir.js';
import { planBuild } from '../../../../src/host/plan/plan-build.js';

const modeOf = (path: string) => statSync(path).mode & 0o777;

describe('output folder', () => {
  it('is private while it is built, and published 0700 with the image, its .zst and a made cluster.secret 0600', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'pi-image-out-'));
    const outDir = join(parent, 'out');
    const { plan } = await planBuild(resolveConfig({ out: outDir }, {}), { env: {} });
    // An earlier build's output, readable by everyone (as pi-image used to leave it): replaced whole.
    mkdirSync(outDir);
    chmodSync(outDir, 0o755);
    writeFileSync(join(outDir, 'manifest.json'), '{"tool":{"name":"pi-image"}}\n');

    const workDir = await makeWorkDir(outDir);
    expect(modeOf(workDir)).toBe(0o700);
    const { img, zst, bmap, sums, manifest } = plan.outputs;
    // As the tools leave them: zstd, bmaptool and writeFile make 0644 files.
    for (const file of [img, zst, bmap, sums, manifest, 'cluster.secret']) {
      writeFileSync(join(workDir, file), 'x');
      chmodSync(join(workDir, file), 0o644);
    }
    await publish(workDir, outDir, plan);

    expect(readdirSync(parent)).toEqual(['out']);
    expect(existsSync(workDir)).toBe(false);
    expect(modeOf(outDir)).toBe(0o700);
    expect(Object.fromEntries(readdirSync(outDir).sort().map((f) => [f, modeOf(join(outDir, f)).toString(8)]))).toEqual({
      [img]: '600',
      [zst]: '600',
      'cluster.secret': '600',
      [bmap]: '644',
      [sums]: '644',
      [manifest]: '644',
    });
  });
});
