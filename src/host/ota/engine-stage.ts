import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheRoot } from '../paths.js';
import { StageCache } from '../pipeline/cache.js';
import type { EngineBuildMeta } from '../pipeline/stages/engine-build.js';
import type { Reporter } from '../progress.js';

/**
 * The image build's engine stage run for a bundle (`runtime pack`): the same cache entry, so
 * a bundle and an image made from the same inputs hold the very same files; reported as a
 * stage, as the build reports it.
 */
export async function cachedEngineStage(opts: {
  title: string;
  key: string;
  produce: (outDir: string) => Promise<EngineBuildMeta>;
  reporter: Reporter;
  env?: NodeJS.ProcessEnv;
}): Promise<{ dir: string; meta: EngineBuildMeta }> {
  const cache = new StageCache(cacheRoot(opts.env), opts.reporter);
  opts.reporter.emit({ type: 'stage-start', stage: 'engine', title: opts.title });
  const started = Date.now();
  const { dir, cached } = await cache.use('engine', opts.key, opts.produce);
  opts.reporter.emit({ type: 'stage-end', stage: 'engine', cached, seconds: (Date.now() - started) / 1000 });
  return { dir, meta: JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as EngineBuildMeta };
}
