import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Config } from '../config/config.js';
import { ConfigError, HostToolMissingError, PiImageError, StageError } from '../errors.js';
import type { Reporter } from '../progress.js';
import { cacheRoot } from '../paths.js';
import { checkHost } from '../tools/host-tools.js';
import { StageCache } from './cache.js';
import { adoptImportedBase, makePlan, type Plan } from '../plan/plan.js';
import { loadBoard, loadLayer, orderLayers, type Layer } from '../catalog/boards.js';
import { planNode } from '../plan/node-plan.js';
import { loadTuningProfile, resolveLevers } from '../catalog/tuning-profiles.js';
import { planBootloader } from '../firmware/bootloader-plan.js';
import { runArtifactsStage, type Manifest } from './stages/artifacts.js';
import { runBaseStage, type BaseMeta } from './stages/base.js';
import { runImageBaseStage } from './stages/base-image.js';
import { runDiskStage } from './stages/disk.js';
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

/** Loads the board and layers a config names and plans the build (no side effects beyond reading files). */
export async function planBuild(config: Config, opts: { configDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ plan: Plan; layers: Layer[] }> {
  const board = await loadBoard(config.board);
  const loaded = [
    ...(await Promise.all(board.layers.map((name) => loadLayer(name)))),
    ...(await Promise.all(config.layers.map((dir) => loadLayer(dir, opts.configDir ?? process.cwd())))),
  ];
  const names = new Set<string>();
  for (const layer of loaded) {
    if (names.has(layer.name)) throw new ConfigError(`layer "${layer.name}" is listed twice`, 'each layer name may appear once');
    names.add(layer.name);
  }
  const layers = orderLayers(loaded);
  const profile = await loadTuningProfile(config.tuning_profile ?? board.tuning);
  const levers = resolveLevers(profile, board.name, config.tuning);
  const bootloader = await planBootloader(config, board.name, levers, opts.configDir ?? process.cwd());
  const keyrings = await planKeyrings(config, opts.configDir ?? process.cwd());
  const node = await planNode(config, board, opts.configDir ?? process.cwd());
  return { plan: makePlan(config, board, layers, { profile, levers }, bootloader, opts.env, keyrings, node), layers };
}

/** Keyrings named by apt.extra_sources[].signed_by: read now, so their content is part of the base cache key. */
async function planKeyrings(config: Config, configDir: string): Promise<Plan['base']['keyrings']> {
  const keyrings: Plan['base']['keyrings'] = [];
  for (const [i, source] of config.apt.extra_sources.entries()) {
    if (!source.signed_by) continue;
    const path = resolve(configDir, source.signed_by);
    const data = await readFile(path).catch(() => {
      throw new ConfigError(`apt.extra_sources[${i}].signed_by: cannot read ${path}`, 'give the path of the source\'s keyring (.gpg or .asc) on this machine');
    });
    const ext = path.endsWith('.asc') ? 'asc' : 'gpg';
    keyrings.push({ path, name: `pi-image-source-${i + 1}.${ext}`, sha256: createHash('sha256').update(data).digest('hex') });
  }
  return keyrings;
}

/** An existing --out must be empty or an earlier pi-image output: it is replaced whole. */
async function checkOutDir(outDir: string): Promise<void> {
  const st = await stat(outDir).catch(() => undefined);
  if (!st) return;
  if (!st.isDirectory()) throw new ConfigError(`--out ${outDir} exists and is not a directory`, 'choose a new or empty directory');
  const entries = await readdir(outDir);
  if (!entries.length) return;
  const manifest = await readFile(join(outDir, 'manifest.json'), 'utf8').catch(() => '');
  if (!manifest.includes('"pi-image"')) {
    throw new ConfigError(
      `--out ${outDir} is not empty and holds no earlier pi-image build; pi-image replaces its output directory as a whole`,
      'choose a new or empty directory',
    );
  }
}

export async function build(opts: {
  config: Config;
  configDir?: string;
  reporter: Reporter;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}): Promise<BuildResult> {
  const { config, reporter, signal } = opts;
  const env = opts.env ?? process.env;
  const missing = (await checkHost()).filter((c) => !c.ok && c.neededFor === 'build');
  if (missing.length) throw new HostToolMissingError(missing.map((c) => ({ name: `${c.name} (${c.detail})`, fix: c.fix ?? '' })));

  const planned = await planBuild(config, { configDir: opts.configDir, env });
  const { layers } = planned;
  let plan = planned.plan;
  const outDir = resolve(plan.outputs.dir);
  await checkOutDir(outDir);
  const cache = new StageCache(cacheRoot(env));
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

  /** A cached stage: its entry's meta.json is the stage's result. */
  const cachedJson = async <T>(stageName: string, key: string, produce: (dir: string) => Promise<unknown>) => {
    const cached = await cache.has(stageName, key);
    if (!cached) await cache.fill(stageName, key, produce);
    return { value: JSON.parse(await readFile(join(cache.entry(stageName, key), 'meta.json'), 'utf8')) as T, cached };
  };

  const root = process.getuid?.() === 0;
  const baseTitle = plan.base.image ? `base rootfs: imported from ${plan.base.image.source}` : `base rootfs: Debian ${plan.base.suite} ${plan.base.arch} (mmdebstrap)`;
  const baseMeta = await stage<BaseMeta>('base', baseTitle, plan.cacheKeys.base, () =>
    cachedJson('base', plan.cacheKeys.base, (dir) =>
      plan.base.image
        ? runImageBaseStage({ plan, outDir: dir, cacheDir: cache.root, reporter, signal, root })
        : runBaseStage({ plan, outDir: dir, reporter, signal, root }),
    ),
  );
  // On an existing image: its disk id, boot partition and boot files are kept.
  if (baseMeta.imported) plan = adoptImportedBase(plan, baseMeta.imported);
  const sourceDateEpoch = plan.sourceDateEpoch.value ?? baseMeta.newestMtime;

  const layersMeta = await stage<LayersMeta>('layers', `layers: ${plan.layers.map((l) => l.name).join(', ')}`, plan.cacheKeys.layers, () =>
    cachedJson('layers', plan.cacheKeys.layers, (dir) =>
      runLayersStage({
        plan,
        layers,
        baseTar: join(cache.entry('base', plan.cacheKeys.base), 'rootfs.tar'),
        timers: baseMeta.timers,
        sourceDateEpoch,
        outDir: dir,
        reporter,
      }),
    ),
  );
  const layersDir = cache.entry('layers', plan.cacheKeys.layers);

  // Everything below happens in a sibling of --out, renamed into place only at the end.
  const workDir = await mkdtemp(join(dirname(outDir), `.${basename(outDir)}.pi-image-tmp-`));
  try {
    const secrets = await secretSources(plan, workDir, reporter);
    const disk = await stage('disk', 'disk image: MBR, FAT32 bootfs, ext4 rootfs', undefined, async () => ({
      value: await runDiskStage({ plan, layers: layersMeta, layersDir, image: join(workDir, plan.outputs.img), secrets, reporter, signal }),
      cached: false,
    }));
    const { manifest, zstdSeconds } = await stage('artifacts', 'artifacts: .img.zst, .bmap, SHA256SUMS, manifest.json', undefined, async () => ({
      value: await runArtifactsStage({ plan, config, base: baseMeta, layers: layersMeta, disk, workDir, reporter, signal }),
      cached: false,
    }));
    if (signal?.aborted) throw signal.reason;
    await chmod(workDir, 0o755); // mkdtemp made it private; the output is not
    await publish(workDir, outDir);
    await cache.prune('layers', 3);
    await cache.prune('base', 3);
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
    await writeFile(made, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    reporter.emit({ type: 'warning', message: `no cluster.secret_file given: made a new cluster secret, saved as ${join(plan.outputs.dir, secret.name)}; build more nodes of this cluster with --cluster-secret ${join(plan.outputs.dir, secret.name)}` });
    out.push({ name: secret.name, source: made });
  }
  return out;
}

/** Replaces --out with the finished work directory; the old output is removed only after the swap. */
async function publish(workDir: string, outDir: string): Promise<void> {
  const previous = `${outDir}.pi-image-old-${process.pid}`;
  const hadOld = await stat(outDir).then(() => true, () => false);
  if (hadOld) await rename(outDir, previous);
  try {
    await rename(workDir, outDir);
  } catch (e) {
    if (hadOld) await rename(previous, outDir);
    throw e;
  }
  if (hadOld) await rm(previous, { recursive: true, force: true });
}
