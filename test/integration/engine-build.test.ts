import { execa } from 'execa';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBoard } from '../../src/host/catalog/boards.js';
import { resolveConfig } from '../../src/host/config/config.js';
import { StageError } from '../../src/host/errors.js';
import { StageCache } from '../../src/host/pipeline/cache.js';
import { runEngineBuildStage } from '../../src/host/pipeline/stages/engine-build.js';
import { planNode, type EngineBuild } from '../../src/host/plan/node-plan.js';
import { silentReporter } from '../../src/host/progress.js';
import { runCli } from '../helpers/cli.js';
import { DLLAMA_SOURCES, vendored } from '../helpers/vendor.js';

/**
 * dllama compiled from its release tarballs as a user's build does it: the cross compiler,
 * the board's -mcpu, static binaries, cached by source hash and flags.
 */
const work = mkdtempSync(join(tmpdir(), 'pi-image-engine-build-'));
const cache = new StageCache(join(work, 'cache'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const planFor = async (version: keyof typeof DLLAMA_SOURCES, overrides: Partial<EngineBuild> = {}): Promise<EngineBuild> => {
  const { file, sha256 } = DLLAMA_SOURCES[version];
  const node = await planNode(resolveConfig({ board: 'qemu', engine: { name: 'dllama', source: vendored(file), sha256 } }, {}), await loadBoard('qemu'));
  return { ...(node.engineBuild as EngineBuild), ...overrides };
};
const compile = (build: EngineBuild, key: string) => cache.use('engine', key, (dir) => runEngineBuildStage({ build, outDir: dir, cacheDir: cache.root, reporter: silentReporter }));

/** ELF machine (183: AArch64) and whether it asks for a dynamic loader (PT_INTERP). */
function elfOf(path: string): { machine: number; interpreter: boolean } {
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(64);
  readSync(fd, head, 0, 64, 0);
  const phoff = Number(head.readBigUInt64LE(32));
  const [phentsize, phnum] = [head.readUInt16LE(54), head.readUInt16LE(56)];
  const ph = Buffer.alloc(phentsize * phnum);
  readSync(fd, ph, 0, ph.length, phoff);
  closeSync(fd);
  const types = Array.from({ length: phnum }, (_, i) => ph.readUInt32LE(i * phentsize));
  return { machine: head.readUInt16LE(18), interpreter: types.includes(3) };
}

describe('dllama compiled from its source tarball', () => {
  /** Where the compiled v0.16.4 binaries are (the first test). */
  let bin04 = '';

  it("compiles v0.16.4 and v0.16.3 into static arm64 binaries for the board's CPU; each knows its own flags", async () => {
    for (const version of ['0.16.4', '0.16.3'] as const) {
      const started = Date.now();
      const { dir, cached } = await compile(await planFor(version), `test-${version}`);
      console.log(`dllama ${version}: compiled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect(cached).toBe(false);
      expect(readdirSync(join(dir, 'bin')).sort()).toEqual(['dllama', 'dllama-api']);
      if (version === '0.16.4') bin04 = join(dir, 'bin');
      expect(existsSync(join(dir, 'src'))).toBe(false);
      for (const binary of ['dllama', 'dllama-api']) expect(elfOf(join(dir, 'bin', binary)), `${version} ${binary}`).toEqual({ machine: 183, interpreter: false });
      // Run through qemu-user (binfmt): its usage line says whether it takes --host.
      const usage = await execa(join(dir, 'bin/dllama-api'), ['--help'], { reject: false, all: true });
      expect(usage.all).toContain('Usage: dllama-api');
      if (version === '0.16.4') expect(usage.all).toContain('[--host <addr>]');
      else expect(usage.all).not.toContain('--host');
    }
  }, 10 * 60_000);

  it('runs the tiny dllama model (pi-image tiny-model x.m): the same printable text on 1, 2 and 4 nodes', async () => {
    const dir = join(work, 'tiny');
    mkdirSync(dir);
    const written = await runCli(['tiny-model', join(dir, 'tiny.m'), '--json']);
    expect(written.exitCode, written.stderr).toBe(0);
    const generate = async (workers: string[]) => {
      const run = await execa(join(bin04, 'dllama'), ['inference', '--model', join(dir, 'tiny.m'), '--tokenizer', join(dir, 'tiny.t'), '--buffer-float-type', 'q80', '--prompt', 'Hello', '--steps', '24', '--nthreads', '1', '--temperature', '0', '--seed', '1', ...(workers.length ? ['--workers', ...workers] : [])], { all: true, timeout: 120_000 });
      return run.all.split('\n').filter((l) => l.startsWith('🔶')).map((l) => l.replace(/^.*?Recv +\d+ kB \| /, '')).join('');
    };
    const alone = await generate([]);
    expect(alone.length).toBeGreaterThan(10);
    expect(alone).toMatch(/^[\x20-\x7e]+$/);
    // Workers on this machine (qemu-user); --net-turbo 0: fewer cores than processes.
    const ports = [19701, 19702, 19703];
    const workers = ports.map((port) => execa(join(bin04, 'dllama'), ['worker', '--host', '127.0.0.1', '--port', String(port), '--nthreads', '1', '--net-turbo', '0'], { reject: false }));
    try {
      await new Promise((r) => setTimeout(r, 2000));
      expect(await generate(ports.slice(0, 1).map((p) => `127.0.0.1:${p}`))).toBe(alone);
      expect(await generate(ports.map((p) => `127.0.0.1:${p}`))).toBe(alone);
    } finally {
      for (const w of workers) w.kill();
    }
    console.log(`tiny dllama model, greedy on 1, 2 and 4 nodes: ${JSON.stringify(alone)}`);
  }, 5 * 60_000);

  it('compiles once: the same source and flags are taken from the cache; other flags compile again', async () => {
    const build = await planFor('0.16.4');
    const again = await compile(build, 'test-0.16.4');
    expect(again.cached).toBe(true);
    const planned = await planNode(resolveConfig({ board: 'pi4', engine: { name: 'dllama', source: build.source, sha256: build.sha256 } }, {}), await loadBoard('pi4'));
    expect(planned.engineBuild?.cxxflags).toContain('-mcpu=cortex-a72');
  }, 5 * 60_000);

  it("a compile error shows the compiler's last lines and leaves nothing behind", async () => {
    const tree = join(work, 'broken', 'distributed-llama-0.16.4');
    mkdirSync(tree, { recursive: true });
    writeFileSync(join(tree, 'Makefile'), 'dllama:\n\t$(CXX) $(CXXFLAGS) -c broken.cpp -o broken.o\ndllama-api: dllama\n');
    writeFileSync(join(tree, 'broken.cpp'), 'int main() { return missing_symbol_here; }\n');
    const tarball = join(work, 'distributed-llama-0.16.4.tar.gz');
    await execa('tar', ['-czf', tarball, '-C', join(work, 'broken'), 'distributed-llama-0.16.4']);
    const sha256 = (await execa('sha256sum', [tarball])).stdout.split(' ')[0] as string;
    const error = await compile(await planFor('0.16.4', { source: tarball, sha256 }), 'test-broken').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StageError);
    expect((error as StageError).command).toMatch(/^make -C \S+ -j\d+ dllama dllama-api CXX=\S+ '?CXXFLAGS=.*-mcpu=cortex-a76/);
    expect((error as StageError).outputTail.join('\n')).toMatch(/missing_symbol_here/);
    expect(readdirSync(join(cache.root, 'engine')).filter((n) => n.startsWith('test-broken'))).toEqual([]);
  }, 5 * 60_000);

  it('refuses a tarball whose SHA-256 is not the pinned one, before unpacking it', async () => {
    const build = await planFor('0.16.4', { sha256: '0'.repeat(64) });
    await expect(compile(build, 'test-pin')).rejects.toThrow(/engine\.source: .*distributed-llama-0\.16\.4\.tar\.gz has sha256 4e030661.*, not the 0{64} the config pins/);
    expect(readdirSync(join(cache.root, 'engine')).filter((n) => n.startsWith('test-pin'))).toEqual([]);
  });
});

