import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tinyGguf } from '../../src/model/tiny-gguf.js';
import { TEST_CACHE } from '../helpers/cli.js';

/**
 * The project's tiny model in the real llama.cpp: Debian forky's llama.cpp 0.7 (amd64, in a
 * chroot made once with mmdebstrap and cached), loaded, run greedily, and run again with every
 * layer on a real ggml RPC server, which must give the same text.
 */
const ROOT = join(TEST_CACHE, 'tools', 'llama-cpp-forky-amd64');

async function ensureLlamaRoot(): Promise<void> {
  if (existsSync(join(ROOT, 'usr/bin/llama-completion'))) return;
  const partial = `${ROOT}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(join(TEST_CACHE, 'tools'), { recursive: true });
  await execa('mmdebstrap', [
    '--variant=apt', '--arch=amd64', '--format=directory',
    '--aptopt=Acquire::Check-Valid-Until "false"',
    '--include=llama.cpp-tools,llama.cpp-tools-extra,libggml0-backend-rpc',
    'forky', partial, 'deb http://deb.debian.org/debian forky main',
  ]);
  renameSync(partial, ROOT);
}

const RPC_SERVER = '/usr/libexec/x86_64-linux-gnu/llama/bin/ggml-rpc-server';

/**
 * Greedy generation of 24 tokens (EOS ignored: random weights may well pick it first). One
 * thread: with two, forky's amd64 build here sometimes stops right after the prompt (exit 0).
 */
function generate(extra: string[] = []): string {
  return execFileSync('chroot', [ROOT, 'llama-completion', '-m', '/tmp/tiny.gguf', '-p', 'hello pi cluster', '-n', '24', '--temp', '0', '--ignore-eos', '--no-warmup', '-t', '1', ...extra], {
    encoding: 'latin1',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
}

describe('tiny GGUF model in the real llama.cpp', () => {
  beforeAll(async () => {
    await ensureLlamaRoot();
    mkdirSync(join(ROOT, 'tmp'), { recursive: true });
    writeFileSync(join(ROOT, 'tmp/tiny.gguf'), tinyGguf());
  }, 20 * 60_000);

  it('loads and generates the same text twice at temperature 0', () => {
    const a = generate();
    expect(a.startsWith(' hello pi cluster')).toBe(true);
    expect(a.length).toBeGreaterThan(' hello pi cluster'.length + 10);
    expect(generate()).toBe(a);
  }, 120_000);

  it('gives the same text with every layer on a ggml RPC server', async () => {
    const local = generate();
    const server = execa('chroot', [ROOT, RPC_SERVER, '-H', '127.0.0.1', '-p', '50152'], { reject: false });
    try {
      await new Promise((r) => setTimeout(r, 2000));
      expect(generate(['--rpc', '127.0.0.1:50152', '-ngl', '99'])).toBe(local);
    } finally {
      server.kill('SIGTERM');
      await server;
    }
  }, 180_000);
});
