import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dllama } from '../../../../src/shared/engines/dllama.js';
import { llamaCpp } from '../../../../src/shared/engines/llama-cpp.js';
import { execa } from 'execa';
import { engineArgv, engineEnvFile } from '../../../../src/node/engine-control.js';
import { parseRuntimeInfo } from '../../../../src/shared/ota/version-info.js';

const workers = [
  { address: '10.42.0.2', port: 9990 },
  { address: '10.42.0.3', port: 9990 },
  { address: '10.42.0.4', port: 9990 },
];

/** Fake dllama binaries that record how they were started: a contract test of the launch lines. */
function fakeBinaries(): { dir: string; log: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pi-image-fake-dllama-'));
  const log = join(dir, 'argv.log');
  for (const name of ['dllama', 'dllama-api']) {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\nprintf '%s' "$(basename "$0")" >> '${log}'\nfor a in "$@"; do printf ' [%s]' "$a" >> '${log}'; done\necho >> '${log}'\n`);
    chmodSync(path, 0o755);
  }
  return { dir, log };
}

/** Runs a launch line the way pi-image-engine.service does: `/usr/bin/env $PI_IMAGE_ENGINE_ARGV`. */
async function run(line: { command: string; args: string[] }, dir: string): Promise<number | undefined> {
  const argv = (await engineArgv(line, [dir])).join(' ').split(' ');
  return (await execa('/usr/bin/env', argv, { reject: false })).exitCode;
}

describe('dllama launch lines (fake dllama executables)', () => {
  it('starts the root with the model, q80 buffers, 3 threads and the full worker list', async () => {
    const { dir, log } = fakeBinaries();
    const line = dllama.root({ model: '/var/lib/pi-image/model.m', tokenizer: '/var/lib/pi-image/model.t', apiPort: 9999, threads: 3, contextLength: 4096, workers });
    expect(await run(line, dir)).toBe(0);
    expect(readFileSync(log, 'utf8')).toBe(
      'dllama-api [--host] [127.0.0.1] [--port] [9999] [--model] [/var/lib/pi-image/model.m] [--tokenizer] [/var/lib/pi-image/model.t] [--buffer-float-type] [q80] [--nthreads] [3] [--max-seq-len] [4096] [--workers] [10.42.0.2:9990] [10.42.0.3:9990] [10.42.0.4:9990]\n',
    );
  });

  it('starts a worker bound to the cluster address, with its port and 3 threads, no model', async () => {
    const { dir, log } = fakeBinaries();
    expect(await run(dllama.worker({ bindAddress: '10.42.0.2', port: 9990, threads: 3 }), dir)).toBe(0);
    // `dllama worker --host` (v0.16.4 on) binds with inet_addr; it defaults to 0.0.0.0, every address.
    expect(readFileSync(log, 'utf8')).toBe('dllama [worker] [--host] [10.42.0.2] [--port] [9990] [--nthreads] [3]\n');
  });

  it('binds a worker only to an IPv4 literal (inet_addr takes nothing else)', () => {
    expect(() => dllama.worker({ bindAddress: 'node-b.local', port: 9990, threads: 3 })).toThrow(/IPv4 literal/);
  });

  it('refuses an argument systemd would split or expand', async () => {
    const { dir } = fakeBinaries();
    await expect(engineArgv({ command: 'dllama', args: ['--model', '/models/my model.m'] }, [dir])).rejects.toThrow(/"\/models\/my model.m" has characters/);
    await expect(engineArgv({ command: 'dllama-missing', args: [] }, [dir])).rejects.toThrow(/dllama-missing is not installed/);
  });

  it("follows the version: v0.16.3 takes no --host (it binds every address), v0.16.4 does; an unknown version is refused", () => {
    const root = (version?: string) => dllama.root({ model: 'm', tokenizer: 't', apiPort: 9999, threads: 3, contextLength: 64, workers: [], version }).args;
    const worker = (version?: string) => dllama.worker({ bindAddress: '10.42.0.2', port: 9990, threads: 3, version }).args;
    expect(root('0.16.3')).not.toContain('--host');
    expect(worker('0.16.3')).toEqual(['worker', '--port', '9990', '--nthreads', '3']);
    expect(root('0.16.4').slice(0, 2)).toEqual(['--host', '127.0.0.1']);
    expect(worker('0.16.4')).toEqual(['worker', '--host', '10.42.0.2', '--port', '9990', '--nthreads', '3']);
    // Prebuilt binaries nobody named a version for: the newest known.
    expect(worker()).toEqual(worker('0.16.4'));
    expect(() => root('0.15.0')).toThrow(/dllama 0\.15\.0 is not a version pi-image knows the flags of \(0\.16\.3, 0\.16\.4\)/);
    expect(dllama.knownVersions).toEqual(['0.16.3', '0.16.4']);
    // dllama-api ignores a request's temperature: a configured one is the server's.
    expect(dllama.root({ model: 'm', tokenizer: 't', apiPort: 9999, threads: 3, contextLength: 64, workers: [], temperature: 0 }).args.join(' ')).toContain('--max-seq-len 64 --temperature 0');
  });

  it('refuses worker host names and cluster sizes dllama cannot run', () => {
    expect(() => dllama.root({ model: 'm', tokenizer: 't', apiPort: 1, threads: 3, contextLength: 1, workers: [{ address: 'node-b.local', port: 9990 }] })).toThrow(/IPv4 literals/);
    expect(dllama.checkCluster(3, { kvHeads: 4 })).toEqual(['dllama needs a power-of-two number of nodes (root included), not 3']);
    expect(dllama.checkCluster(8, { kvHeads: 4 })).toEqual(['dllama cannot split the model over 8 nodes: it has 4 KV heads']);
    expect(dllama.checkCluster(4, { kvHeads: 4 })).toEqual([]);
  });
});

describe('llama.cpp launch lines', () => {
  it('offloads every layer to the RPC workers from the root', () => {
    expect(llamaCpp.root({ model: '/m.gguf', apiPort: 8081, threads: 3, contextLength: 512, workers: workers.slice(0, 2).map((w) => ({ ...w, port: 50052 })) })).toEqual({
      command: 'llama-server',
      args: ['--host', '127.0.0.1', '--port', '8081', '-m', '/m.gguf', '-c', '512', '-t', '3', '--rpc', '10.42.0.2:50052,10.42.0.3:50052', '-ngl', '99'],
    });
  });

  it('binds the RPC server to the cluster address (it defaults to 127.0.0.1)', () => {
    expect(llamaCpp.worker({ bindAddress: '10.42.0.2', port: 50052, threads: 3 })).toEqual({
      command: '/usr/libexec/aarch64-linux-gnu/llama/bin/ggml-rpc-server',
      args: ['-H', '10.42.0.2', '-p', '50052', '-t', '3'],
    });
  });
});

describe('nodes an engine runs with after a failover', () => {
  it('llama.cpp: every node left; dllama: the largest power of two', () => {
    expect([1, 2, 3, 5, 8].map(llamaCpp.usableNodes)).toEqual([1, 2, 3, 5, 8]);
    expect([1, 2, 3, 5, 7, 8].map(dllama.usableNodes)).toEqual([1, 2, 2, 4, 4, 8]);
  });
});

describe("a runtime's own libraries", () => {
  it("go first on the engine unit's library path, and are part of what adoption compares", () => {
    const argv = ['/opt/pi-image/runtime/versions/0.7.0+dfsg-2/llama-server', '--port', '8081'];
    const withLibs = engineEnvFile(argv, '', '/opt/pi-image/runtime/versions/0.7.0+dfsg-2');
    expect(withLibs).toMatch(/^LD_LIBRARY_PATH=\/opt\/pi-image\/runtime\/versions\/0\.7\.0\+dfsg-2$/m);
    expect(engineEnvFile(argv, '')).not.toMatch(/LD_LIBRARY_PATH/);
    expect(withLibs).not.toBe(engineEnvFile(argv, '', '/opt/pi-image/runtime/versions/0.7.0+dfsg-2+sid'));
  });

  it("are named in a runtime folder's description, and only inside it", () => {
    const info = { engine: 'llama.cpp', version: '0.7.0+dfsg-2', entry: { root: 'llama-server', worker: 'ggml-rpc-server' } };
    expect(parseRuntimeInfo(JSON.stringify({ ...info, libraryPath: '.' }), '/x').libraryPath).toBe('.');
    expect(parseRuntimeInfo(JSON.stringify(info), '/x').libraryPath).toBeUndefined();
    expect(() => parseRuntimeInfo(JSON.stringify({ ...info, libraryPath: '../../usr/lib' }), '/x')).toThrow(/does not describe a runtime/);
  });
});
