import { join } from 'node:path';
import { debianRuntimeCacheKey } from '../plan/plan.js';
import { debianRuntimeTitle, LLAMA_CPP_DEBIAN_RUNTIME, runDebianRuntimeStage, type DebianRuntimeRequest } from '../pipeline/stages/engine-debian.js';
import type { Reporter } from '../progress.js';
import type { BundleSource } from './bundle-write.js';
import { cachedEngineStage } from './engine-stage.js';

/**
 * A llama.cpp runtime bundle's files from a Debian suite's packages, laid out as the image
 * build's engine stage lays out the image's first runtime (an image built on this suite runs
 * these very files).
 */
export async function runtimeFromDebian(opts: {
  request: DebianRuntimeRequest;
  reporter: Reporter;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}): Promise<{ version: string; files: BundleSource[]; libraryPath: string }> {
  const { request, reporter, signal } = opts;
  const { dir, meta } = await cachedEngineStage({
    title: debianRuntimeTitle(request),
    key: debianRuntimeCacheKey(request),
    produce: (outDir) => runDebianRuntimeStage({ request, outDir, reporter, signal }),
    reporter,
    env: opts.env,
  });
  const programs: string[] = Object.values(LLAMA_CPP_DEBIAN_RUNTIME.entry);
  return {
    version: meta.version,
    files: meta.files.map(({ name }) => ({ source: join(dir, 'bin', name), path: name, mode: programs.includes(name) ? 0o755 : 0o644 })),
    libraryPath: LLAMA_CPP_DEBIAN_RUNTIME.libraryPath,
  };
}
