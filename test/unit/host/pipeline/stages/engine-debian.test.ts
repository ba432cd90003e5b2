import { describe, expect, it } from 'vitest';
import { llamaCppRuntimeFiles } from '../../../../../src/host/pipeline/stages/engine-debian.js';
import { debianRuntimeCacheKey } from '../../../../../src/host/plan/plan.js';

/** What Debian sid's llama.cpp-tools, llama.cpp-tools-extra, libllama0, libggml0 and libggml0-backend-rpc (arm64) unpack, trimmed. */
const UNPACKED = [
  'usr/bin/llama-bench',
  'usr/bin/llama-cli',
  'usr/bin/llama-server',
  'usr/bin/llama-tokenize',
  'usr/lib/aarch64-linux-gnu/llama/libllama-cli-impl.so',
  'usr/lib/aarch64-linux-gnu/llama/libllama-server-impl.so',
  'usr/libexec/aarch64-linux-gnu/llama/bin/ggml-rpc-server',
  'usr/libexec/aarch64-linux-gnu/ggml/test-gguf',
  'usr/lib/aarch64-linux-gnu/libllama.so.0',
  'usr/lib/aarch64-linux-gnu/libllama.so.0.7.0',
  'usr/lib/aarch64-linux-gnu/libllama-common.so.0',
  'usr/lib/aarch64-linux-gnu/libllama-common.so.0.7.0',
  'usr/lib/aarch64-linux-gnu/libmtmd.so.0',
  'usr/lib/aarch64-linux-gnu/libmtmd.so.0.7.0',
  'usr/lib/aarch64-linux-gnu/libggml.so.0',
  'usr/lib/aarch64-linux-gnu/libggml.so.0.27.0',
  'usr/lib/aarch64-linux-gnu/libggml-base.so.0',
  'usr/lib/aarch64-linux-gnu/libggml-base.so.0.27.0',
  'usr/lib/aarch64-linux-gnu/ggml/backends0/libggml-cpu-armv8.0_1.so',
  'usr/lib/aarch64-linux-gnu/ggml/backends0/libggml-cpu-armv9.2_2.so',
  'usr/lib/aarch64-linux-gnu/ggml/backends0/libggml-rpc.so',
  'usr/share/doc/libggml0/copyright',
  'usr/share/llama.cpp/llama-server/simplechat-legacy-ui/index.html',
];

describe("llama.cpp's runtime from Debian's packages", () => {
  it('takes the two programs, the libraries under their sonames and the ggml backends, all in one folder', () => {
    const files = llamaCppRuntimeFiles(UNPACKED);
    expect(files.map((f) => f.to).sort()).toEqual([
      'ggml-rpc-server',
      'libggml-base.so.0',
      'libggml-cpu-armv8.0_1.so',
      'libggml-cpu-armv9.2_2.so',
      'libggml-rpc.so',
      'libggml.so.0',
      'libllama-common.so.0',
      'libllama-server-impl.so',
      'libllama.so.0',
      'libmtmd.so.0',
      'llama-server',
    ]);
    expect(files.filter((f) => f.mode === 0o755).map((f) => f.to).sort()).toEqual(['ggml-rpc-server', 'llama-server']);
    expect(files.find((f) => f.to === 'libggml.so.0')?.from).toBe('usr/lib/aarch64-linux-gnu/libggml.so.0');
  });

  it('names what a changed package layout no longer has', () => {
    expect(() => llamaCppRuntimeFiles(UNPACKED.filter((p) => !p.includes('backends0/libggml-cpu')))).toThrow(/no ggml CPU backend/);
    expect(() => llamaCppRuntimeFiles(UNPACKED.filter((p) => !p.endsWith('ggml-rpc-server')))).toThrow(/no ggml-rpc-server/);
    expect(() => llamaCppRuntimeFiles(UNPACKED.filter((p) => !p.endsWith('libmtmd.so.0')))).toThrow(/no libmtmd\.so/);
  });

  it('is cached per suite, architecture and mirror', () => {
    const key = (suite: string, arch = 'arm64', mirror = 'http://deb.debian.org/debian') => debianRuntimeCacheKey({ suite, arch, mirror });
    expect(key('forky')).toBe(key('forky'));
    expect(new Set([key('forky'), key('sid'), key('forky', 'amd64'), key('forky', 'arm64', 'http://mirror.example/debian')]).size).toBe(4);
  });
});
