import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/** `pi-image keys`, `runtime pack|verify` and `model pack|verify` as a user runs them. */
const work = mkdtempSync(join(tmpdir(), 'pi-image-ota-'));
const at = (...p: string[]) => join(work, ...p);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('OTA bundles from the command line', () => {
  it('keys new: a private key 0600 and its public half; never replaced without --force', async () => {
    const made = await runCli(['keys', 'new', '--dir', work, '--json']);
    expect(made.exitCode, made.stderr).toBe(0);
    expect(statSync(at('ota.key')).mode & 0o777).toBe(0o600);
    expect(statSync(at('ota.pub')).mode & 0o777).toBe(0o644);
    expect(made.events.find((e) => e.type === 'result')?.data).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(made.stdout).not.toContain('PRIVATE KEY');
    const again = await runCli(['keys', 'new', '--dir', work]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/ota.key exists: not replacing an update key/);
    expect((await runCli(['keys', 'new', '--dir', work, '--name', 'other'])).exitCode).toBe(0);
  });

  it('runtime pack → verify; another key, a damaged copy and the wrong architecture are refused', async () => {
    mkdirSync(at('rt/bin'), { recursive: true });
    writeFileSync(at('rt/bin/llama-server'), Buffer.alloc(200_000, 7));
    writeFileSync(at('rt/bin/ggml-rpc-server'), Buffer.alloc(30_000, 9));
    writeFileSync(at('rt/bin/libggml.so'), Buffer.alloc(10_000, 1));
    chmodSync(at('rt/bin/llama-server'), 0o755);
    chmodSync(at('rt/bin/ggml-rpc-server'), 0o755);
    const bundle = at('rt.bundle');
    const packed = await runCli(['runtime', 'pack', at('rt'), '--engine', 'llama.cpp', '--engine-version', 'b6100', '--key', at('ota.key'), '-o', bundle]);
    expect(packed.exitCode, packed.stderr).toBe(0);
    expect(packed.stdout).toMatch(/runtime bundle: llama.cpp b6100 for arm64, 3 file\(s\).*root runs bin\/llama-server, workers run bin\/ggml-rpc-server/);
    // The private key is in no part of the bundle.
    const der = createPrivateKey(readFileSync(at('ota.key'), 'utf8')).export({ type: 'pkcs8', format: 'der' });
    expect(readFileSync(bundle).includes(der.subarray(-32))).toBe(false);

    const ok = await runCli(['runtime', 'verify', bundle, '--trust', at('ota.pub'), '--arch', 'arm64', '--json']);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.events.find((e) => e.type === 'result')?.data).toMatchObject({ ok: true, manifest: { version: 'b6100', files: expect.any(Array) } });
    const stranger = await runCli(['runtime', 'verify', bundle, '--trust', at('other.pub')]);
    expect(stranger.exitCode).toBe(1);
    expect(stranger.stderr).toMatch(/which is not trusted here/);
    const damaged = at('damaged.bundle');
    const bytes = readFileSync(bundle);
    const i = bytes.length - 4096; // inside the last payload file
    bytes.writeUInt8(bytes.readUInt8(i) ^ 0xff, i);
    writeFileSync(damaged, bytes);
    const bad = await runCli(['runtime', 'verify', damaged, '--trust', at('ota.pub')]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/does not match its SHA-256 in the signed manifest/);
    const cut = at('cut.bundle');
    writeFileSync(cut, readFileSync(bundle).subarray(0, 100_000));
    expect((await runCli(['runtime', 'verify', cut, '--trust', at('ota.pub')])).stderr).toMatch(/truncated/);
    expect((await runCli(['runtime', 'verify', bundle, '--trust', at('ota.pub'), '--arch', 'amd64'])).stderr).toMatch(/built for arm64, but the nodes are amd64/);
  });

  it('refuses a key others can read, and a folder without the engine programs', async () => {
    chmodSync(at('ota.key'), 0o644);
    const loose = await runCli(['runtime', 'pack', at('rt'), '--engine', 'llama.cpp', '--engine-version', 'b1', '--key', at('ota.key'), '-o', at('x.bundle')]);
    expect(loose.stderr).toMatch(/can be read by others \(mode 644\)/);
    expect(existsSync(at('x.bundle'))).toBe(false);
    chmodSync(at('ota.key'), 0o600);
    const wrong = await runCli(['runtime', 'pack', at('rt'), '--engine', 'dllama', '--engine-version', '0.16.4', '--key', at('ota.key'), '-o', at('x.bundle')]);
    expect(wrong.stderr).toMatch(/has no root program \(dllama-api, executable\)/);
    expect(existsSync(at('x.bundle')) || existsSync(at('x.bundle.partial'))).toBe(false);
  });

  it('runtime pack: a folder or --engine-source (dllama compiled as the build does), each usage mistake exit 2 before any work', async () => {
    const cases: [string[], RegExp][] = [
      [['--engine', 'llama.cpp', '--engine-version', 'b1'], /give the runtime folder to pack, --debian-suite for llama.cpp, or --engine-source/],
      [['--engine', 'dllama', '--debian-suite', 'sid'], /--debian-suite takes llama.cpp from Debian's packages: add --engine llama.cpp/],
      [[at('rt'), '--engine', 'llama.cpp', '--debian-suite', 'sid'], /give a runtime folder .* or --debian-suite, not both/],
      [['--engine', 'llama.cpp', '--debian-suite', 'sid', '--engine-source', at('x.tar.gz')], /--engine-source \(dllama\) or --debian-suite \(llama.cpp\), not both/],
      [['--engine', 'llama.cpp', '--debian-suite', 'sid', '--library-path', 'lib'], /--library-path goes with a runtime folder/],
      [[at('rt'), '--engine', 'llama.cpp'], /--engine-version is needed with a runtime folder/],
      [['--engine', 'llama.cpp', '--engine-source', at('x.tar.gz')], /--engine-source compiles dllama: add --engine dllama/],
      [[at('rt'), '--engine', 'dllama', '--engine-source', at('x.tar.gz')], /give a runtime folder .* or --engine-source, not both/],
      [[at('rt'), '--engine', 'llama.cpp', '--engine-version', 'b1', '--engine-sha256', 'ab'], /--engine-sha256 goes with --engine-source/],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(['runtime', 'pack', ...args, '--key', at('ota.key'), '-o', at('y.bundle')]);
      expect(run.exitCode, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(message);
    }
    // A tarball that is not there fails as the build would: nothing compiled, no bundle.
    const missing = await runCli(['runtime', 'pack', '--engine', 'dllama', '--engine-source', at('distributed-llama-0.16.4.tar.gz'), '--engine-sha256', 'a'.repeat(64), '--key', at('ota.key'), '-o', at('y.bundle')]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/engine\.source: .*distributed-llama-0\.16\.4\.tar\.gz does not exist/);
    expect(existsSync(at('y.bundle'))).toBe(false);
  });

  it("runtime pack --debian-suite: llama.cpp's packages of a suite fetched with apt, laid out as the image's first runtime, signed", async () => {
    const bundle = at('sid.bundle');
    // A cache of its own: the packages are fetched here, not taken from an earlier build.
    const packed = await runCli(['runtime', 'pack', '--engine', 'llama.cpp', '--debian-suite', 'sid', '--key', at('ota.key'), '-o', bundle, '--json'], { env: { PI_IMAGE_CACHE: at('cache') } });
    expect(packed.exitCode, packed.stderr).toBe(0);
    const { manifest } = packed.events.find((e) => e.type === 'result')?.data as { manifest: { version: string; entry: unknown; libraryPath: string; files: { path: string; mode: number; size: number }[] } };
    // Debian's version without its epoch (1:0.7.0+dfsg-2 → 0.7.0+dfsg-2).
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+\+dfsg-[\w.+~]+$/);
    expect(manifest.entry).toEqual({ root: 'llama-server', worker: 'ggml-rpc-server' });
    expect(manifest.libraryPath).toBe('.');
    const paths = manifest.files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['llama-server', 'ggml-rpc-server', 'libllama.so.0', 'libggml.so.0', 'libggml-base.so.0', 'libllama-server-impl.so', 'libggml-rpc.so']));
    expect(paths.filter((p) => p.startsWith('libggml-cpu-')).length).toBeGreaterThan(1);
    expect(manifest.files.filter((f) => f.mode === 0o755).map((f) => f.path).sort()).toEqual(['ggml-rpc-server', 'llama-server']);
    // Real arm64 programs, not placeholders.
    const server = readFileSync(join(at('cache'), 'engine', readdirSync(join(at('cache'), 'engine')).find((d) => !d.startsWith('.')) as string, 'bin', 'llama-server'));
    expect(server.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(server.readUInt16LE(18)).toBe(183); // e_machine EM_AARCH64
    const ok = await runCli(['runtime', 'verify', bundle, '--trust', at('ota.pub'), '--arch', 'arm64']);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/root runs llama-server, workers run ggml-rpc-server/);
    // A suite without llama.cpp fails with apt's reason and leaves no bundle.
    const old = await runCli(['runtime', 'pack', '--engine', 'llama.cpp', '--debian-suite', 'bookworm', '--key', at('ota.key'), '-o', at('old.bundle')], { env: { PI_IMAGE_CACHE: at('cache') } });
    expect(old.exitCode).toBe(1);
    expect(old.stderr).toMatch(/Debian bookworm has llama\.cpp-tools/);
    expect(existsSync(at('old.bundle'))).toBe(false);
  }, 300_000);

  it('a model over 4 GiB is signed and verified over its whole content', async () => {
    const model = at('big.gguf');
    execFileSync('truncate', ['-s', String(4 * 1024 ** 3 + 12345), model]);
    writeFileSync(at('tail'), 'the end of a very large model');
    execFileSync('dd', [`if=${at('tail')}`, `of=${model}`, 'bs=1', `seek=${4 * 1024 ** 3}`, 'conv=notrunc', 'status=none']);
    const bundle = at('big.bundle');
    const packed = await runCli(['model', 'pack', model, '--key', at('ota.key'), '-o', bundle]);
    expect(packed.exitCode, packed.stderr).toBe(0);
    expect(statSync(bundle).size).toBeGreaterThan(4 * 1024 ** 3);
    expect((await runCli(['model', 'verify', bundle, '--trust', at('ota.pub')])).exitCode).toBe(0);
    // One byte changed past the 4 GiB mark is caught.
    const size = 4 * 1024 ** 3 + 12345;
    const padding = (512 - (size % 512)) % 512; // then the tar's two zero blocks
    execFileSync('dd', [`of=${bundle}`, 'bs=1', `seek=${statSync(bundle).size - 1024 - padding - 100}`, 'count=1', 'conv=notrunc', 'status=none'], { input: 'X' });
    const bad = await runCli(['model', 'verify', bundle, '--trust', at('ota.pub')]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/model.gguf does not match its SHA-256/);
    rmSync(model);
    rmSync(bundle);
  }, 10 * 60_000);
});
