import { access, constants } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { Config } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { loadBoard } from '../catalog/boards.js';
import { loadBuiltInLayer, loadLayer, orderLayers, type Layer } from '../catalog/layers.js';
import { loadTuningProfile, resolveLevers } from '../catalog/tuning-profiles.js';
import { planBootloader } from '../firmware/bootloader-plan.js';
import { sha256OfFile } from '../../shared/file-hash.js';
import { planNode } from './node-plan.js';
import { ENGINE_LAYERS, makePlan, type Plan, type PlanInputs } from './plan.js';

/**
 * Reads what a config names — its board, layers and tuning profile, the host files of its
 * keys — and plans the build (no side effects beyond reading files). The config's paths are
 * absolute already (resolveConfig).
 */
export async function planBuild(config: Config, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<{ inputs: PlanInputs; plan: Plan }> {
  const board = await loadBoard(config.board);
  // A local base image is read only by the base stage: check it now, so --print-plan fails as the build would.
  if (config.base && !/^https?:\/\//.test(config.base.image)) {
    await access(config.base.image, constants.R_OK).catch(() => {
      throw new ConfigError(`base.image: ${config.base?.image} does not exist or cannot be read`, 'give the path of the downloaded .img or .img.xz (relative paths are relative to the config file), or its https:// URL');
    });
  }
  const engine = config.engine.name ?? board.engine;
  const engineLayer = ENGINE_LAYERS[engine];
  const loaded = await Promise.all([
    ...board.layers.map((name) => loadBuiltInLayer(name)),
    // The engine's runtime follows `engine:` (or the board's default), whatever the board lists.
    ...(engineLayer && !board.layers.includes(engineLayer) && !config.layers.includes(engineLayer) ? [loadBuiltInLayer(engineLayer)] : []),
    // A user layer is a folder (an absolute path by now); a bare name is a built-in layer.
    ...config.layers.map((ref) => (isAbsolute(ref) ? loadLayer(ref) : loadBuiltInLayer(ref))),
  ]);
  const names = new Set<string>();
  for (const layer of loaded) {
    if (names.has(layer.name)) throw new ConfigError(`layer "${layer.name}" is listed twice`, 'each layer name may appear once');
    names.add(layer.name);
  }
  const layers = orderLayers(loaded);
  checkLayerSuites(layers, config, board.suite);
  const node = await planNode(config, board);
  const engineSuites = layers.find((l) => l.name === engineLayer)?.suites;
  if (node.debianRuntime && engineSuites && !engineSuites.includes(node.debianRuntime.suite)) {
    // The base suite has no llama.cpp, an extra source has: the runtime comes from there.
    const source = config.apt.extra_sources.find((s) => s.suites.some((x) => engineSuites.includes(x)));
    if (source) node.debianRuntime = { ...node.debianRuntime, suite: source.suites.find((x) => engineSuites.includes(x)) as string, mirror: source.uris[0] as string };
  }
  const profile = await loadTuningProfile(config.tuning_profile ?? board.tuning);
  const levers = resolveLevers(profile, board.name, config.tuning);
  const inputs: PlanInputs = {
    config,
    board,
    layers,
    tuning: { profile, levers },
    bootloader: await planBootloader(config, board.name, levers),
    keyrings: await planKeyrings(config),
    node,
    sourceDateEpoch: sourceDateEpochOf(config, opts.env ?? process.env),
  };
  return { inputs, plan: makePlan(inputs) };
}

/** A layer whose packages only some suites have fails here, not minutes into mmdebstrap. */
function checkLayerSuites(layers: readonly Layer[], config: Config, boardSuite: string): void {
  const suite = config.suite ?? boardSuite;
  const extra = config.apt.extra_sources.flatMap((s) => s.suites);
  for (const layer of layers) {
    const suites = layer.suites;
    if (!suites || suites.includes(suite) || extra.some((s) => suites.includes(s))) continue;
    const engine = Object.entries(ENGINE_LAYERS).find(([, name]) => name === layer.name)?.[0];
    throw new ConfigError(
      `${engine ? `engine ${engine}: its packages` : `layer ${layer.name}: its packages (${layer.packages.join(', ')})`} are in Debian ${suites.join(' and ')} only, not ${suite}${config.base ? ' (the suite of base.image)' : ''}`,
      `build on ${suites[0]} (--suite ${suites[0]}), or add a ${suites[0]} source in apt.extra_sources${engine === 'llama.cpp' ? ', or choose engine: { name: dllama }' : ''}`,
    );
  }
}

/** Keyrings named by apt.extra_sources[].signed_by: read now, so their content is part of the base cache key. */
async function planKeyrings(config: Config): Promise<Plan['base']['keyrings']> {
  const keyrings: Plan['base']['keyrings'][number][] = [];
  for (const [i, source] of config.apt.extra_sources.entries()) {
    const path = source.signed_by;
    if (!path) continue;
    const sha256 = await sha256OfFile(path).catch(() => {
      throw new ConfigError(`apt.extra_sources[${i}].signed_by: cannot read ${path}`, "give the path of the source's keyring (.gpg or .asc) on this machine");
    });
    keyrings.push({ path, name: `pi-image-source-${i + 1}.${path.endsWith('.asc') ? 'asc' : 'gpg'}`, sha256 });
  }
  return keyrings;
}

/** SOURCE_DATE_EPOCH from the config, else from the environment, else (null) the base rootfs's newest file. */
function sourceDateEpochOf(config: Config, env: NodeJS.ProcessEnv): Plan['sourceDateEpoch'] {
  if (config.source_date_epoch !== undefined) return { value: config.source_date_epoch, from: 'config' };
  if (env.SOURCE_DATE_EPOCH && /^\d+$/.test(env.SOURCE_DATE_EPOCH)) return { value: Number(env.SOURCE_DATE_EPOCH), from: 'environment' };
  return { value: null, from: 'base rootfs' };
}
