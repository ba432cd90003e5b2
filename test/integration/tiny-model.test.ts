import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { tinyGguf } from '../../src/host/model/tiny-gguf.js';
import { TEST_CACHE } from '../helpers/cli.js';

/**
 * The project's tiny model in the real llama.cpp: Debian forky's llama-server (amd64, in a
 * chroot made once with mmdebstrap and cached), run greedily, then with every layer on a real
 * ggml RPC server: the generated token ids must be the same.
 */
const ROOT = join(TEST_CACHE, 'tools', 'llama-cpp-forky-amd64');
const RPC_SERVER = '/usr/libexec/x86_64-linux-gnu/llama/bin/ggml-rpc-server';

async function ensureLlamaRoot(): Promise<void> {
  if (existsSync(join(ROOT, 'usr/bin/llama-server')) && existsSync(join(ROOT, RPC_SERVER))) return;
  const partial = `${ROOT}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(join(TEST_CACHE, 'tools'), { recursive: true });
  await execa('mmdebstrap', [
    '--variant=apt', '--arch=amd64', '--format=directory',
    '--aptopt=Acquire::Check-Valid-Until "false"',
    '--include=llama.cpp-tools,llama.cpp-tools-extra,libggml0-backend-rpc',
    'forky', partial, 'deb http://deb.debian.org/debian forky main',
  ]);
  rmSync(ROOT, { recursive: true, force: true });
  renameSync(partial, ROOT);
}

async function waitReady(port: number, server: ResultPromise, log: () => string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
    if (ok) return;
    if (server.exitCode !== undefined && server.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`llama-server on port ${port} did not become ready:\n${log().slice(-3000)}`);
}

/** Starts llama-server, asks for 24 greedy tokens (EOS ignored: random weights may pick it first), stops it. */
async function generateTokens(port: number, extra: string[] = [], whileServing?: () => Promise<void>): Promise<{ tokens: number[]; log: string }> {
  let log = '';
  const server = execa('chroot', [ROOT, 'llama-server', '-m', '/tmp/tiny.gguf', '--host', '127.0.0.1', '--port', String(port), '-t', '1', '-c', '256', ...extra], { reject: false, all: true, buffer: false });
  server.all?.on('data', (d: Buffer) => (log += d.toString()));
  try {
    await waitReady(port, server, () => log);
    const res = await fetch(`http://127.0.0.1:${port}/completion`, {
      method: 'POST',
      body: JSON.stringify({ prompt: 'hello pi cluster', n_predict: 24, temperature: 0, ignore_eos: true, return_tokens: true, cache_prompt: false }),
    });
    const body = (await res.json()) as { tokens: number[] };
    await whileServing?.();
    return { tokens: body.tokens, log };
  } finally {
    server.kill('SIGTERM');
    await server;
  }
}

const sha = (tokens: number[]) => createHash('sha256').update(JSON.stringify(tokens)).digest('hex');

describe('tiny GGUF model in the real llama.cpp', () => {
  beforeAll(async () => {
    await ensureLlamaRoot();
    mkdirSync(join(ROOT, 'tmp'), { recursive: true });
    writeFileSync(join(ROOT, 'tmp/tiny.gguf'), tinyGguf());
  }, 20 * 60_000);

  it('loads and generates the same token ids twice at temperature 0', async () => {
    const a = await generateTokens(18201);
    expect(a.tokens).toHaveLength(24);
    expect(sha((await generateTokens(18202)).tokens)).toBe(sha(a.tokens));
  }, 180_000);

  it('gives the same token ids with every layer on a ggml RPC server', async () => {
    const local = await generateTokens(18203);
    let rpcLog = '';
    const rpc = execa('chroot', [ROOT, RPC_SERVER, '-H', '127.0.0.1', '-p', '50152'], { reject: false, all: true, buffer: false });
    rpc.all?.on('data', (d: Buffer) => (rpcLog += d.toString()));
    try {
      await new Promise((r) => setTimeout(r, 1500));
      let connections = 0;
      const remote = await generateTokens(18204, ['--rpc', '127.0.0.1:50152', '-ngl', '99'], async () => {
        // The root holds a connection to the RPC server while it serves: the layers live there.
        const ss = await execa('ss', ['-Htn', 'state', 'established', '( sport = :50152 )']);
        connections = ss.stdout.split('\n').filter(Boolean).length;
      });
      expect(connections).toBeGreaterThan(0);
      expect(sha(remote.tokens)).toBe(sha(local.tokens));
    } finally {
      rpc.kill('SIGTERM');
      await rpc;
    }
    expect(rpcLog).toContain('Starting RPC server');
  }, 240_000);
});
