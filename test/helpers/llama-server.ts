import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { TEST_CACHE } from './cli.js';

/**
 * Debian forky's llama.cpp (amd64) in a chroot made once with mmdebstrap and cached under
 * TEST_CACHE/tools: the real llama-server and ggml RPC server for the integration tests.
 */
export const LLAMA_ROOT = join(TEST_CACHE, 'tools', 'llama-cpp-forky-amd64');
export const RPC_SERVER = '/usr/libexec/x86_64-linux-gnu/llama/bin/ggml-rpc-server';

export async function ensureLlamaRoot(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error('the llama.cpp tests run llama-server in a chroot: they need root');
  if (existsSync(join(LLAMA_ROOT, 'usr/bin/llama-server')) && existsSync(join(LLAMA_ROOT, RPC_SERVER))) return;
  const partial = `${LLAMA_ROOT}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(join(TEST_CACHE, 'tools'), { recursive: true });
  await execa('mmdebstrap', [
    '--variant=apt', '--arch=amd64', '--format=directory',
    '--aptopt=Acquire::Check-Valid-Until "false"',
    '--include=llama.cpp-tools,llama.cpp-tools-extra,libggml0-backend-rpc',
    'forky', partial, 'deb http://deb.debian.org/debian forky main',
  ]);
  rmSync(LLAMA_ROOT, { recursive: true, force: true });
  renameSync(partial, LLAMA_ROOT);
}

export async function waitReady(port: number, server: ResultPromise, log: () => string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
    if (ok) return;
    if (server.exitCode !== undefined && server.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`llama-server on port ${port} did not become ready:\n${log().slice(-3000)}`);
}
