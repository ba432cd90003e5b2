import { join, resolve } from 'node:path';
import type { Config } from '../config/config.js';
import { renderCmdline, renderConfigTxt } from '../firmware/boot-files.js';
import { TOOL_VERSION } from '../version.js';
import { contentHash } from '../pipeline/hash.js';
import type { BoardProfile, Layer } from '../catalog/boards.js';
import Handlebars from 'handlebars';
import { ConfigError } from '../errors.js';
import { forbiddenConfigTxtKeys } from '../tuning/render.js';
import type { BootloaderPlan } from '../firmware/bootloader-plan.js';
import type { ResolvedLever, TuningProfile } from '../catalog/tuning-profiles.js';
import { emptyNodePlan, type NodePlan } from './node-plan.js';

/**
 * Bump when what a stage produces changes for the same inputs (e.g. a new mke2fs option),
 * so old cache entries are not reused.
 */
const STAGE_RECIPES = { base: 1, layers: 1 };

export interface PlannedLayer {
  name: string;
  description: string;
  origin: string;
  files: { path: string; sha256: string; template: boolean; mode: string; uid: number; gid: number }[];
  remove: string[];
  enable: { unit: string; wanted_by: string }[];
  mask: string[];
}

/** Everything a build will do, as plain data: what `--print-plan` shows and what the stages consume. */
export interface Plan {
  tool: { name: 'pi-image'; version: string };
  board: { name: string; description: string; arch: string };
  role: Config['role'];
  hostname: string;
  base: {
    suite: string;
    variant: string;
    arch: string;
    mirrors: string[];
    components: string[];
    extraSources: Config['apt']['extra_sources'];
    checkValidUntil: boolean;
    packages: string[];
    enableUnits: string[];
    initramfsModules?: string[];
    /** An existing disk image to start from instead of mmdebstrap. */
    image?: { source: string; sha256: string };
    /** Keyrings of extra sources, from the build host; installed as /etc/apt/trusted.gpg.d/<name>. */
    keyrings: { path: string; name: string; sha256: string }[];
  };
  layers: PlannedLayer[];
  tuning: { profile: string; levers: ResolvedLever[] };
  bootloader: BootloaderPlan;
  engine: NodePlan['settings']['engine']['name'];
  /** The node agent's settings and the files it needs (model, engine binaries, login keys, secrets). */
  node: NodePlan;
  boot: {
    offsetMib: number;
    partitionMib: number;
    copy: BoardProfile['boot']['copy'];
    /** Rendered words of the board and layers (a base image's own come first, see adoptImportedBase). */
    cmdlineWords: string[];
    cmdline: string;
    /** config.txt as data; null for boards without one. */
    configSections: Record<string, string[]> | null;
    configTxt: string | null;
  };
  disk: { diskId: string; bootPartuuid: string; rootPartuuid: string; headroomMib: number };
  sourceDateEpoch: { value: number | null; from: 'config' | 'environment' | 'base rootfs' };
  compressionLevel: number;
  outputs: { dir: string; img: string; zst: string; bmap: string; sums: string; manifest: string };
  cacheKeys: { base: string; layers: string };
}

/** The context every overlay template is rendered with. */
export function templateContext(plan: Plan): Record<string, unknown> {
  return {
    hostname: plan.hostname,
    role: plan.role,
    board: plan.board,
    suite: plan.base.suite,
    disk: plan.disk,
    tool: plan.tool,
  };
}

export function renderTemplate(source: string, plan: Plan, name: string): string {
  try {
    return Handlebars.compile(source, { strict: true, noEscape: true })(templateContext(plan));
  } catch (e) {
    throw new Error(`template ${name}: ${(e as Error).message}`);
  }
}

/** The MBR disk id: stable per image name and board, so PARTUUIDs never change between rebuilds. */
function diskIdFor(name: string, board: string): string {
  const id = contentHash({ diskId: name, board }).slice(0, 8);
  return id === '00000000' ? '00000001' : id;
}

function fileMode(layer: Layer, path: string): { mode: string; uid: number; gid: number } {
  const attrs = layer.files[path] ?? {};
  return { mode: (attrs.mode ?? '0644').padStart(4, '0'), uid: attrs.uid ?? 0, gid: attrs.gid ?? 0 };
}

function mergeSections(into: Record<string, string[]>, from: Record<string, string[]> | undefined): Record<string, string[]> {
  for (const [section, lines] of Object.entries(from ?? {})) into[section] = [...(into[section] ?? []), ...lines];
  return into;
}

/** config.txt sections from the board, then each layer, then pi-image.yaml: composed once, rendered once. */
export function composeConfigTxt(board: BoardProfile, layers: Layer[], config: Config): Record<string, string[]> {
  const sections: Record<string, string[]> = {};
  const add = (from: Record<string, string[]> | undefined) => mergeSections(sections, from);
  if (!config.base) add(board.boot.kernel_config_txt);
  add(board.boot.config_txt);
  for (const layer of layers) add(layer.config_txt);
  // NVMe on a Pi 5 sits behind the external PCIe connector, off by default.
  if (config.storage === 'nvme') add({ pi5: ['dtparam=pciex1'] });
  add(config.config_txt);
  return sections;
}

export function makePlan(
  config: Config,
  board: BoardProfile,
  layers: Layer[],
  tuning: { profile: TuningProfile; levers: ResolvedLever[] },
  bootloader: BootloaderPlan,
  env: NodeJS.ProcessEnv = process.env,
  keyrings: Plan['base']['keyrings'] = [],
  node: NodePlan = emptyNodePlan(config, board),
): Plan {
  const name = config.name ?? `pi-image-${board.name}`;
  const suite = config.suite ?? board.suite;
  const components = config.components ?? board.components;
  // An existing image brings its own kernel and firmware: only what the layers and the config add is installed.
  const boardPackages = config.base ? [] : board.packages;
  const packages = [...new Set([...boardPackages, ...layers.flatMap((l) => l.packages), ...config.packages])].sort();
  const enableUnits = [...new Set(layers.flatMap((l) => l.base_enable))].sort();
  const diskId = diskIdFor(name, board.name);
  const outDir = resolve(config.out);

  const base: Plan['base'] = {
    suite,
    variant: board.variant,
    arch: board.arch,
    mirrors: config.mirrors,
    components,
    extraSources: config.apt.extra_sources,
    checkValidUntil: config.apt.check_valid_until,
    packages,
    enableUnits,
    initramfsModules: config.base ? undefined : board.initramfs_modules,
    image: config.base ? { source: config.base.image, sha256: config.base.sha256 } : undefined,
    keyrings,
  };

  const sdeFromEnv = env.SOURCE_DATE_EPOCH && /^\d+$/.test(env.SOURCE_DATE_EPOCH) ? Number(env.SOURCE_DATE_EPOCH) : undefined;
  const sourceDateEpoch: Plan['sourceDateEpoch'] =
    config.source_date_epoch !== undefined
      ? { value: config.source_date_epoch, from: 'config' }
      : sdeFromEnv !== undefined
        ? { value: sdeFromEnv, from: 'environment' }
        : { value: null, from: 'base rootfs' };

  const plannedLayers: PlannedLayer[] = layers.map((layer) => ({
    name: layer.name,
    description: layer.description,
    origin: layer.origin,
    files: layer.overlay.map((f) => ({ path: f.path, sha256: f.sha256, template: f.template, ...fileMode(layer, f.path) })),
    remove: layer.remove,
    enable: layer.enable,
    mask: layer.mask,
  }));

  const plan: Plan = {
    tool: { name: 'pi-image', version: TOOL_VERSION },
    board: { name: board.name, description: board.description, arch: board.arch },
    role: config.role,
    hostname: config.hostname,
    base,
    layers: plannedLayers,
    tuning: { profile: tuning.profile.name, levers: tuning.levers },
    bootloader,
    engine: node.settings.engine.name,
    node,
    boot: {
      offsetMib: board.boot.offset_mib,
      partitionMib: board.boot.partition_mib,
      copy: config.base ? [] : board.boot.copy,
      cmdlineWords: [],
      cmdline: '',
      configSections: null,
      configTxt: null,
    },
    disk: { diskId, bootPartuuid: `${diskId}-01`, rootPartuuid: `${diskId}-02`, headroomMib: config.rootfs.headroom_mib },
    sourceDateEpoch,
    compressionLevel: config.compression.level,
    outputs: {
      dir: outDir,
      img: `${name}.img`,
      zst: `${name}.img.zst`,
      bmap: `${name}.bmap`,
      sums: 'SHA256SUMS',
      manifest: 'manifest.json',
    },
    cacheKeys: { base: '', layers: '' },
  };
  const cmdlineWords = [...board.boot.cmdline, ...layers.flatMap((l) => l.cmdline)];
  plan.boot.cmdlineWords = cmdlineWords.map((w, i) => renderTemplate(w, plan, `cmdline word ${i + 1}`));
  plan.boot.cmdline = renderCmdline(plan.boot.cmdlineWords);
  const sections = composeConfigTxt(board, layers, config);
  const overclock = forbiddenConfigTxtKeys(plan.tuning.levers, sections);
  if (overclock.length) {
    throw new ConfigError(
      `config.txt would overclock: ${overclock.map((h) => `"${h.line}" in [${h.section}]`).join(', ')}; the tuning profile ${tuning.profile.name} forbids it (lever ${overclock[0]?.lever})`,
      'the measured figures are at nominal clocks: remove the key from the layer or pi-image.yaml, or switch the lever off with tuning: { no_overclock: false }',
    );
  }
  plan.boot.configSections = board.boot.config_txt ? sections : null;
  plan.boot.configTxt = board.boot.config_txt ? renderConfigTxt(sections) : null;

  // The image is identified by its content: the same file under another path or URL is the same base.
  plan.cacheKeys.base = contentHash({ recipe: STAGE_RECIPES.base, base: { ...base, image: base.image?.sha256, keyrings: base.keyrings.map((k) => k.sha256) } });
  plan.cacheKeys.layers = contentHash({
    recipe: STAGE_RECIPES.layers,
    base: plan.cacheKeys.base,
    layers: plannedLayers.map(({ origin: _origin, ...rest }) => rest),
    context: templateContext(plan),
    boot: plan.boot,
    tuning: plan.tuning,
    bootloader,
    node: { settings: node.settings, files: node.files.map(({ source: _source, ...f }) => f), authorizedKeys: node.authorizedKeys },
    sde: sourceDateEpoch.value,
  });
  return plan;
}

export function outputPath(plan: Plan, key: keyof Plan['outputs']): string {
  return key === 'dir' ? plan.outputs.dir : join(plan.outputs.dir, plan.outputs[key]);
}

/** What the base stage learned from an existing disk image. */
export interface ImportedBase {
  diskId: string;
  bootOffsetMib: number;
  bootMib: number;
  configTxt?: string;
  cmdline?: string;
}

/** Parses config.txt into sections (comments dropped); lines before any [section] belong to [all]. */
export function parseConfigTxt(text: string): Record<string, string[]> {
  const sections: Record<string, string[]> = {};
  let current = 'all';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) current = header[1] as string;
    else (sections[current] ??= []).push(line);
  }
  return sections;
}

/**
 * The plan for a build on an existing image, once its base stage has read it: the image's
 * disk id (so PARTUUIDs stay), its boot partition's place and size, and its own
 * config.txt and cmdline.txt as the first layer of composition.
 */
export function adoptImportedBase(plan: Plan, imported: ImportedBase): Plan {
  const next: Plan = structuredClone(plan);
  next.disk = { ...plan.disk, diskId: imported.diskId, bootPartuuid: `${imported.diskId}-01`, rootPartuuid: `${imported.diskId}-02` };
  next.boot.offsetMib = imported.bootOffsetMib;
  next.boot.partitionMib = imported.bootMib;
  const rerendered = plan.boot.cmdlineWords.map((w) => w.replaceAll(plan.disk.diskId, imported.diskId));
  next.boot.cmdlineWords = [...(imported.cmdline?.trim().split(/\s+/).filter(Boolean) ?? []), ...rerendered];
  next.boot.cmdline = renderCmdline(next.boot.cmdlineWords);
  if (plan.boot.configSections) {
    next.boot.configSections = mergeSections(mergeSections({}, parseConfigTxt(imported.configTxt ?? '')), plan.boot.configSections);
    next.boot.configTxt = renderConfigTxt(next.boot.configSections);
  }
  return next;
}
