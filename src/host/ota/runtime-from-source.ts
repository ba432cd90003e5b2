import { join } from 'node:path';
import { loadBoard } from '../catalog/boards.js';
import { cacheRoot } from '../paths.js';
import { planEngineBuild } from '../plan/node-plan.js';
import { engineCacheKey } from '../plan/plan.js';
import { StageCache } from '../pipeline/cache.js';
import { runEngineBuildStage } from '../pipeline/stages/engine-build.js';
import type { Reporter } from '../progress.js';
import type { BundleSource } from './bundle-write.js';

/**
 * A runtime bundle's programs from the engine's source tarball, compiled for a board exactly as
 * the image build's engine stage does (the same cache entry: an image built from this tarball
 * for this board has these very binaries).
 */
export async function runtimeFromSource(opts: {
  source: string;
  sha256?: string;
  version?: string;
  board: string;
  reporter: Reporter;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}): Promise<{ version: string; files: BundleSource[]; cached: boolean }> {
  const build = await planEngineBuild({ source: opts.source, sha256: opts.sha256, version: opts.version }, await loadBoard(opts.board));
  const cache = new StageCache(cacheRoot(opts.env), opts.reporter);
  opts.reporter.emit({ type: 'stage-start', stage: 'engine', title: `engine: ${build.engine} ${build.version} from source (${build.cxx} ${build.cxxflags})` });
  const started = Date.now();
  const { dir, cached } = await cache.use('engine', engineCacheKey(build), (out) => runEngineBuildStage({ build, outDir: out, cacheDir: cache.root, reporter: opts.reporter, signal: opts.signal }));
  opts.reporter.emit({ type: 'stage-end', stage: 'engine', cached, seconds: (Date.now() - started) / 1000 });
  return { version: build.version, files: build.targets.map((name) => ({ source: join(dir, 'bin', name), path: name, mode: 0o755 as const })), cached };
}
