import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import { HostToolMissingError, PiImageError, StageError } from '../errors.js';
import type { Reporter } from '../progress.js';
import { cacheRoot } from '../paths.js';
import { checkHost } from '../tools/host-tools.js';
import { StageCache } from './cache.js';
import { checkOutDir, makeWorkDir, publish, SECRET_FILE_MODE } from './output-dir.js';
import { makePlan, type Plan } from '../plan/plan.js';
import { planBuild } from '../plan/plan-build.js';
import { runArtifactsStage, type Manifest } from './stages/artifacts.js';
import { runBaseStage, type BaseMeta } from './stages/base.js';
import { runImageBaseStage } from './stages/base-image.js';
import { runDiskStage } from './stages/disk.js';
import { engineBuildTitle, runEngineBuildStage, type EngineBuildMeta } from './stages/engine-build.js';
import { debianRuntimeTitle, LLAMA_CPP_DEBIAN_RUNTIME, runDebianRuntimeStage } from './stages/engine-debian.js';
import { runtimeInfoOf } from '../../shared/ota/version-info.js';
import { runLayersStage, type LayersMeta } from './stages/layers.js';

export interface StageTiming {
  stage: string;
  cached: boolean;
  seconds: number;
}

export interface BuildResult {
  plan: Plan;
  manifest: Manifest;
  stages: StageTiming[];
  /** Time spent in the tools pi-image does not own (mmdebstrap is 0 when the base came from the cache). */
  toolSeconds: { mmdebstrap: number; zstd: number };
  outDir: string;
}

export async function build(opts: { config: Config; reporter: Reporter; signal?: AbortSignal; env?: NodeJS.ProcessEnv }): Promise<BuildResult> {
  const { config, reporter, signal } = opts;
  const env = opts.env ?? process.env;
  const missing = (await checkHost()).filter((c) => !c.ok && c.neededFor === 'build');
  if (missing.length) throw new HostToolMissingError(missing.map((c) => ({ name: `${c.name} (${c.detail})`, fix: c.fix ?? '' })));

  const planned = await planBuild(config, { env });
  for (const message of planned.plan.warnings) reporter.emit({ type: 'warning', message });
  const outDir = planned.plan.outputs.dir;
  await checkOutDir(outDir);
  const cache = new StageCache(cacheRoot(env), reporter);
  const stages: StageTiming[] = [];

  const stage = async <T>(name: string, title: string, key: string | undefined, run: () => Promise<{ value: T; cached: boolean }>): Promise<T> => {
    reporter.emit({ type: 'stage-start', stage: name, title });
    const started = Date.now();
    try {
      const { value, cached } = await run();
      const seconds = (Date.now() - started) / 1000;
      stages.push({ stage: name, cached, seconds });
      reporter.emit({ type: 'stage-end', stage: name, cached, seconds, key });
      return value;
    } catch (e) {
      if (signal?.aborted) throw e;
      if (e instanceof PiImageError) throw e;
      throw new StageError(name, `${name}: ${(e as Error).message}`, undefined);
    }
  };

  /** A cached stage (its entry checked against its record, else rebuilt): the entry's meta.json is the stage's result. */
  const cachedJson = async <T>(stageName: string, key: string, produce: (dir: string) => Promise<unknown>) => {
    const { dir, cached } = await cache.use(stageName, key, produce);
    return { value: JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as T, cached };
  };

  const root = process.getuid?.() === 0;
  const { base, cacheKeys } = planned.plan;
  const baseTitle = base.image ? `base rootfs: imported from ${base.image.source}` : `base rootfs: Debian ${base.suite} ${base.arch} (mmdebstrap)`;
  const baseMeta = await stage<BaseMeta>('base', baseTitle, cacheKeys.base, () =>
    cachedJson('base', cacheKeys.base, (dir) =>
      base.image
        ? runImageBaseStage({ plan: planned.plan, outDir: dir, cacheDir: cache.root, reporter, signal, root })
        : runBaseStage({ plan: planned.plan, outDir: dir, reporter, signal, root }),
    ),
  );
  // The final plan. On an existing image it keeps the image's disk id, boot partition and boot files.
  const plan = baseMeta.imported ? makePlan(planned.inputs, baseMeta.imported) : planned.plan;
  // Derived from the inputs, never from when or where the base was built: the archive's
  // Release date (an imported image: its newest file). Files newer than it are clamped to it.
  const sourceDateEpoch = plan.sourceDateEpoch.value ?? baseMeta.releaseDate ?? baseMeta.newestMtime;

  // An engine built from source: compiled once per source hash and flags, then reused;
  // llama.cpp: its Debian packages fetched and unpacked once per suite, then reused.
  const { engineBuild, debianRuntime } = plan.node;
  const engineKey = plan.cacheKeys.engine;
  const engineStage = engineBuild
    ? { title: engineBuildTitle(engineBuild), produce: (dir: string) => runEngineBuildStage({ build: engineBuild, outDir: dir, cacheDir: cache.root, reporter, signal }) }
    : debianRuntime
      ? { title: debianRuntimeTitle(debianRuntime), produce: (dir: string) => runDebianRuntimeStage({ request: debianRuntime, outDir: dir, reporter, signal }) }
      : undefined;
  const engineMeta = engineStage && engineKey ? await stage<EngineBuildMeta>('engine', engineStage.title, engineKey, () => cachedJson('engine', engineKey, engineStage.produce)) : undefined;
  // The packages' version names the first runtime's folder.
  const layersPlan: Plan =
    debianRuntime && engineMeta ? { ...plan, node: { ...plan.node, runtime: runtimeInfoOf({ engine: 'llama.cpp', version: engineMeta.version, ...LLAMA_CPP_DEBIAN_RUNTIME }) } } : plan;

  const layersMeta = await stage<LayersMeta>('layers', `layers: ${plan.layers.map((l) => l.name).join(', ')}`, plan.cacheKeys.layers, () =>
    cachedJson('layers', plan.cacheKeys.layers, (dir) =>
      runLayersStage({
        plan: layersPlan,
        layers: planned.inputs.layers,
        baseTar: join(cache.entry('base', plan.cacheKeys.base), 'rootfs.tar'),
        timers: baseMeta.timers,
        sourceDateEpoch,
        outDir: dir,
        reporter,
        engineBinaries: engineMeta && engineKey ? { dir: join(cache.entry('engine', engineKey), 'bin'), files: engineMeta.files } : undefined,
      }),
    ),
  );
  const layersDir = cache.entry('layers', plan.cacheKeys.layers);

  // Everything below happens in a private sibling of --out, renamed into place only at the end.
  const workDir = await makeWorkDir(outDir);
  try {
    const secrets = await secretSources(plan, workDir, reporter);
    const disk = await stage('disk', 'disk image: MBR, FAT32 bootfs, ext4 rootfs', undefined, async () => ({
      value: await runDiskStage({ plan, layers: layersMeta, layersDir, image: join(workDir, plan.outputs.img), secrets, reporter, signal }),
      cached: false,
    }));
    const { manifest, zstdSeconds } = await stage('artifacts', 'artifacts: .img.zst, .bmap, SHA256SUMS, manifest.json', undefined, async () => ({
      value: await runArtifactsStage({ plan, config, base: baseMeta, layers: layersMeta, engine: engineMeta, disk, workDir, reporter, signal }),
      cached: false,
    }));
    if (signal?.aborted) throw signal.reason;
    await publish(workDir, outDir, plan);
    await cache.prune('layers', 3);
    await cache.prune('base', 3);
    await cache.prune('engine', 3);
    const baseCached = stages.find((s) => s.stage === 'base')?.cached ?? true;
    return { plan, manifest, stages, outDir, toolSeconds: { mmdebstrap: baseCached ? 0 : baseMeta.mmdebstrapSeconds, zstd: zstdSeconds } };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** The secrets for the boot partition; a cluster secret nobody gave is made here and published as <out>/cluster.secret. */
async function secretSources(plan: Plan, workDir: string, reporter: Reporter): Promise<{ name: string; source: string }[]> {
  const out: { name: string; source: string }[] = [];
  for (const secret of plan.node.secrets) {
    if (secret.source) {
      out.push({ name: secret.name, source: secret.source });
      continue;
    }
    const made = join(workDir, secret.name);
    await writeFile(made, `${randomBytes(32).toString('hex')}\n`, { mode: SECRET_FILE_MODE });
    reporter.emit({ type: 'warning', message: `no cluster.secret_file given: made a new cluster secret, saved as ${join(plan.outputs.dir, secret.name)}; build more nodes of this cluster with --cluster-secret ${join(plan.outputs.dir, secret.name)}` });
    out.push({ name: secret.name, source: made });
  }
  return out;
}
