import { join } from 'node:path';
import { loadBoard } from '../catalog/boards.js';
import { planEngineBuild } from '../plan/node-plan.js';
import { engineCacheKey } from '../plan/plan.js';
import { engineBuildTitle, runEngineBuildStage } from '../pipeline/stages/engine-build.js';
import type { Reporter } from '../progress.js';
import type { BundleSource } from './bundle-write.js';
import { cachedEngineStage } from './engine-stage.js';
import { cacheRoot } from '../paths.js';

/**
 * A runtime bundle's programs from the engine's source tarball, compiled for a board exactly as
 * the image build's engine stage does (an image built from this tarball for this board has
 * these very binaries).
 */
export async function runtimeFromSource(opts: {
  source: string;
  sha256?: string;
  version?: string;
  board: string;
  reporter: Reporter;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}): Promise<{ version: string; files: BundleSource[] }> {
  const { reporter, signal } = opts;
  const build = await planEngineBuild({ source: opts.source, sha256: opts.sha256, version: opts.version }, await loadBoard(opts.board));
  const { dir } = await cachedEngineStage({
    title: engineBuildTitle(build),
    key: engineCacheKey(build),
    // The tarball is downloaded into the cache folder, beside the stage entries.
    produce: (outDir) => runEngineBuildStage({ build, outDir, cacheDir: cacheRoot(opts.env), reporter, signal }),
    reporter,
    env: opts.env,
  });
  return { version: build.version, files: build.targets.map((name) => ({ source: join(dir, 'bin', name), path: name, mode: 0o755 as const })) };
}
