import { join } from 'node:path';
import { cacheRoot } from '../paths.js';
import { debianRuntimeCacheKey } from '../plan/plan.js';
import { StageCache } from '../pipeline/cache.js';
import { LLAMA_CPP_DEBIAN_RUNTIME, runDebianRuntimeStage, type DebianRuntimeRequest } from '../pipeline/stages/engine-debian.js';
import type { EngineBuildMeta } from '../pipeline/stages/engine-build.js';
import type { Reporter } from '../progress.js';
import type { BundleSource } from './bundle-write.js';
import { readFile } from 'node:fs/promises';

/**
 * A llama.cpp runtime bundle's files from a Debian suite's packages, laid out as the image
 * build's engine stage lays out the image's first runtime (the same cache entry: an image
 * built on this suite runs these very files).
 */
export async function runtimeFromDebian(opts: {
  request: DebianRuntimeRequest;
  reporter: Reporter;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}): Promise<{ version: string; files: BundleSource[]; entry: { root: string; worker: string }; libraryPath: string; cached: boolean }> {
  const cache = new StageCache(cacheRoot(opts.env), opts.reporter);
  opts.reporter.emit({ type: 'stage-start', stage: 'engine', title: `engine: llama.cpp from Debian ${opts.request.suite} ${opts.request.arch} packages` });
  const started = Date.now();
  const { dir, cached } = await cache.use('engine', debianRuntimeCacheKey(opts.request), (out) => runDebianRuntimeStage({ request: opts.request, outDir: out, reporter: opts.reporter, signal: opts.signal }));
  opts.reporter.emit({ type: 'stage-end', stage: 'engine', cached, seconds: (Date.now() - started) / 1000 });
  const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as EngineBuildMeta;
  const { entry, libraryPath } = LLAMA_CPP_DEBIAN_RUNTIME;
  const programs: string[] = Object.values(entry);
  return {
    version: meta.version,
    files: meta.files.map(({ name }) => ({ source: join(dir, 'bin', name), path: name, mode: programs.includes(name) ? 0o755 : 0o644 })),
    entry: { ...entry },
    libraryPath,
    cached,
  };
}
