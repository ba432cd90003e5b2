import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';

/**
 * The package as a user installs it: `npm pack` of a fresh clone of this repository (its
 * prepack builds dist/ there, not in this checkout, which other tests run from),
 * `npm install -g` into a temporary prefix (dependencies from the npm registry), then the
 * installed `pi-image` runs. Every source map in the package points at a file it ships.
 */
const work = mkdtempSync(join(tmpdir(), 'pi-image-pack-'));
const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('the npm package', () => {
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('packs, installs globally, and runs: --version and build --print-plan', async () => {
    const clone = join(work, 'clone');
    await execa('git', ['clone', '--quiet', REPO, clone]);
    // The build tools only (typescript, esbuild): the clone's own npm ci would fetch them again.
    await execa('ln', ['-s', join(REPO, 'node_modules'), join(clone, 'node_modules')]);
    const packed = await execa('npm', ['pack', '--pack-destination', work], { cwd: clone, reject: false });
    expect(packed.exitCode, packed.stderr).toBe(0);
    const tarball = join(work, `pi-image-${version}.tgz`);
    expect(existsSync(tarball)).toBe(true);

    const unpacked = join(work, 'unpacked');
    await execa('mkdir', ['-p', unpacked]);
    await execa('tar', ['xzf', tarball, '-C', unpacked]);
    const root = join(unpacked, 'package');
    expect(existsSync(join(root, 'LICENSE'))).toBe(true);
    expect(existsSync(join(root, 'dist/host/cli/main.js'))).toBe(true);
    expect(existsSync(join(root, 'dist/node/pi-node.cjs'))).toBe(true);
    const missing: string[] = [];
    for (const map of files(join(root, 'dist')).filter((f) => f.endsWith('.map'))) {
      const { sources, sourceRoot } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const s of sources) if (!existsSync(resolve(dirname(map), sourceRoot ?? '', s))) missing.push(`${map.slice(root.length)} → ${s}`);
    }
    expect(missing).toEqual([]);

    const prefix = join(work, 'prefix');
    const installed = await execa('npm', ['install', '-g', '--prefix', prefix, tarball], { reject: false });
    expect(installed.exitCode, installed.stderr).toBe(0);
    const bin = join(prefix, 'bin/pi-image');
    expect(statSync(bin).isFile() || statSync(bin).isSymbolicLink()).toBe(true);
    expect((await execa(bin, ['--version'])).stdout.trim()).toBe(version);
    const plan = await execa(bin, ['build', '--print-plan', '--board', 'qemu', '--json'], { cwd: work, reject: false });
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('"board"');
  }, 10 * 60_000);
});
