import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { HOST_TOOLS } from '../../src/host/tools/host-tools.js';
import { QEMU_TEST_FLAGS, REPO, runCli, TEST_CACHE } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'pi-image-errors-'));
const env = { PI_IMAGE_CACHE: TEST_CACHE };
const fixtureLayer = join(REPO, 'test/fixtures/layers/serial-console');

/** Nothing at --out, and no temporary sibling left behind. */
function expectNothingWritten(out: string): void {
  expect(existsSync(out)).toBe(false);
  const parent = join(out, '..');
  expect(readdirSync(parent).filter((n) => n.includes('pi-image-tmp'))).toEqual([]);
}

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('bad input gives a clear error and writes nothing', () => {
  it('rejects a bad config file before any work', async () => {
    const config = join(work, 'bad.yaml');
    writeFileSync(config, 'board: qemu\nrole: boss\nrootfs:\n  headroom_mib: lots\ncolour: blue\n');
    const out = join(work, 'out-bad-config');
    const run = await runCli(['build', '--config', config, '--out', out], { env });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('key "role": value "boss" is not allowed; allowed: "auto", "root", "worker"');
    expect(run.stderr).toContain('key "rootfs.headroom_mib": value "lots" is not of type integer');
    expect(run.stderr).toContain('unknown key "colour"');
    expectNothingWritten(out);
  });

  it('rejects YAML that does not parse', async () => {
    const config = join(work, 'broken.yaml');
    writeFileSync(config, 'board: [qemu\n');
    const run = await runCli(['build', '--config', config, '--out', join(work, 'o')], { env });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/broken.yaml: not valid YAML/);
  });

  it('names an unreachable mirror', async () => {
    const out = join(work, 'out-mirror');
    const run = await runCli(['build', '--mirror', 'http://127.0.0.1:9/debian', '--out', out], {
      env: { PI_IMAGE_CACHE: join(work, 'empty-cache') },
      timeoutMs: 10 * 60_000,
    });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('error: base: cannot reach the Debian mirror (http://127.0.0.1:9/debian)');
    expect(run.stderr).toContain('command: mmdebstrap');
    expect(run.stderr).toContain('last output:');
    expectNothingWritten(out);
    expect(readdirSync(join(work, 'empty-cache/base')).filter((n) => !n.includes('partial'))).toEqual([]);
  }, 10 * 60_000);

  it('names a missing host tool and the command that installs it', async () => {
    // A PATH with every tool the build needs except mtools.
    const bin = join(work, 'bin');
    mkdirSync(bin);
    for (const tool of HOST_TOOLS) {
      for (const command of tool.commands) {
        if (tool.name === 'mtools') continue;
        const found = await execa('sh', ['-c', `command -v ${command}`], { reject: false });
        if (found.exitCode === 0) symlinkSync(found.stdout.trim(), join(bin, command));
      }
    }
    const out = join(work, 'out-missing-tool');
    const run = await runCli(['build', '--out', out], { env: { ...env, PATH: bin } });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/error: missing host tool: mtools \(not found: mcopy, mmd/);
    expect(run.stderr).toContain('apt-get install -y mtools');
    expectNothingWritten(out);
  });

  it('names a full disk', async () => {
    const small = join(work, 'small');
    mkdirSync(small);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', small]);
    try {
      const out = join(small, 'out');
      const run = await runCli(['build', ...QEMU_TEST_FLAGS, '--hostname', 'pi-test', '--layer', fixtureLayer, '--out', out], { env });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toMatch(/error: not enough free space for .*small\/out: \d+ MiB free on its file system, about \d+ MiB needed/);
      expect(run.stderr).toContain('hint: free some space there or choose another --out');
      expectNothingWritten(out);
    } finally {
      await execa('umount', [small]);
    }
  }, 45 * 60_000);

  it('refuses to replace a directory it did not make', async () => {
    const out = join(work, 'not-ours');
    mkdirSync(out);
    writeFileSync(join(out, 'precious.txt'), 'keep me');
    const run = await runCli(['build', '--out', out], { env });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('is not empty and holds no earlier pi-image build');
    expect(readFileSync(join(out, 'precious.txt'), 'utf8')).toBe('keep me');
  });

  it('leaves the previous output as it was when interrupted (Ctrl-C)', async () => {
    const out = join(work, 'out-interrupt');
    const args = ['build', ...QEMU_TEST_FLAGS, '--hostname', 'pi-test', '--layer', fixtureLayer, '--out', out, '--json'];
    const good = await runCli(args, { env });
    expect(good.exitCode, good.stderr).toBe(0);
    const before = readFileSync(join(out, 'manifest.json'), 'utf8');

    const child = execa(process.execPath, [join(REPO, 'dist/host/cli/main.js'), ...args, '--zstd-level', '3'], { env, reject: false, stdin: 'ignore' });
    await new Promise<void>((resolve) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('"type":"stage-start","stage":"disk"')) resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 3000));
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode).toBe(130);
    expect(String(result.stderr)).toContain('error: interrupted by SIGINT');
    expect(readFileSync(join(out, 'manifest.json'), 'utf8')).toBe(before);
    expect(readdirSync(work).filter((n) => n.includes('pi-image-tmp') || n.includes('pi-image-old'))).toEqual([]);
  }, 45 * 60_000);
});
