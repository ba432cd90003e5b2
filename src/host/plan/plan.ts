import Handlebars from 'handlebars';
import type { AptSource, Config } from '../config/config.js';
import { concatSections, parseCmdline, parseConfigTxt, renderCmdline, renderConfigTxt } from '../firmware/boot-files.js';
import { TOOL_VERSION } from '../version.js';
import { contentHash } from '../pipeline/hash.js';
import type { BoardProfile } from '../catalog/boards.js';
import type { Layer } from '../catalog/layers.js';
import { ConfigError } from '../errors.js';
import { didYouMean } from '../config/did-you-mean.js';
import { forbiddenConfigTxtKeys } from '../tuning/render.js';
import type { BootloaderPlan } from '../firmware/bootloader-plan.js';
import type { ResolvedLever, TuningProfile } from '../catalog/tuning-profiles.js';
import type { EngineBuild, NodePlan } from './node-plan.js';
import { LLAMA_CPP_PACKAGES, type DebianRuntimeRequest } from '../pipeline/stages/engine-debian.js';
import type { EngineName } from '../../shared/engines/adapter.js';

/**
 * Bump when what a stage produces changes for the same inputs (e.g. a new mke2fs option),
 * so old cache entries are not reused.
 */
const STAGE_RECIPES = { base: 1, layers: 2, engine: 1 };

/** Everything a plan is made from: the config, and what planBuild read from the catalog and the files the config names. */
export interface PlanInputs {
  readonly config: Config;
  readonly board: BoardProfile;
  /** In the order they apply: every layer after those it requires. */
  readonly layers: readonly Layer[];
  readonly tuning: { readonly profile: TuningProfile; readonly levers: ResolvedLever[] };
  readonly bootloader: BootloaderPlan;
  readonly keyrings: Plan['base']['keyrings'];
  readonly node: NodePlan;
  readonly sourceDateEpoch: Plan['sourceDateEpoch'];
}

/** What the base stage learned from an existing disk image. */
export interface ImportedBase {
  diskId: string;
  bootOffsetMib: number;
  bootMib: number;
  configTxt?: string;
  cmdline?: string;
}

export interface PlannedFile {
  readonly path: string;
  readonly sha256: string;
  readonly template: boolean;
  readonly mode: string;
  readonly uid: number;
  readonly gid: number;
}

export interface PlannedLayer {
  readonly name: string;
  readonly description: string;
  readonly origin: string;
  readonly files: readonly PlannedFile[];
  readonly remove: readonly string[];
  readonly enable: readonly Readonly<{ unit: string; wanted_by: string }>[];
  readonly mask: readonly string[];
}

/**
 * Everything a build will do, as plain data: what `--print-plan` shows and what the stages
 * consume. Made by makePlan and frozen (deeply): nothing changes a plan once it is made.
 */
export interface Plan {
  readonly tool: Readonly<{ name: 'pi-image'; version: string }>;
  readonly board: Readonly<{ name: string; description: string; arch: string }>;
  readonly role: Config['role'];
  readonly hostname: string;
  /** /etc/localtime, /etc/timezone, /etc/locale.conf and timesyncd's servers (none: Debian's pool). */
  readonly system: Readonly<{ timezone: string; locale: string; ntpServers: readonly string[] }>;
  readonly base: Readonly<{
    suite: string;
    variant: string;
    arch: string;
    mirrors: readonly string[];
    components: readonly string[];
    extraSources: readonly Readonly<AptSource>[];
    checkValidUntil: boolean;
    packages: readonly string[];
    enableUnits: readonly string[];
    initramfsModules?: readonly string[];
    /** An existing disk image to start from instead of mmdebstrap. */
    image?: Readonly<{ source: string; sha256: string }>;
    /** Keyrings of extra sources, from the build host; installed as /etc/apt/trusted.gpg.d/<name>. */
    keyrings: readonly Readonly<{ path: string; name: string; sha256: string }>[];
  }>;
  readonly layers: readonly PlannedLayer[];
  readonly tuning: Readonly<{ profile: string; levers: readonly ResolvedLever[] }>;
  readonly bootloader: Readonly<BootloaderPlan>;
  /** The node agent's settings and the files it needs (model, engine binaries, login keys, secrets). */
  readonly node: Readonly<NodePlan>;
  /** Which engine, why that one, and where its runtime comes from. */
  readonly engine: Readonly<{ name: EngineName; from: string; runtime: string }>;
  readonly boot: Readonly<{
    offsetMib: number;
    partitionMib: number;
    copy: readonly Readonly<BoardProfile['boot']['copy'][number]>[];
    cmdline: string;
    /** Null for boards without a config.txt. */
    configTxt: string | null;
  }>;
  readonly disk: Readonly<{ diskId: string; bootPartuuid: string; rootPartuuid: string; headroomMib: number }>;
  readonly sourceDateEpoch: Readonly<{ value: number | null; from: 'config' | 'environment' | 'base rootfs' }>;
  readonly compressionLevel: number;
  readonly outputs: Readonly<{ dir: string; img: string; zst: string; bmap: string; sums: string; manifest: string }>;
  /** engine: the compiled engine's entry, when the engine is built from source. */
  readonly cacheKeys: Readonly<{ base: string; layers: string; engine?: string }>;
  /** What would leave a user stuck later, though the image builds: shown by --print-plan and the build. */
  readonly warnings: readonly string[];
}

/** The built-in layer that installs an engine's runtime from Debian packages; dllama's binaries are compiled (engine.source) or brought (engine.dllama_dir). */
export const ENGINE_LAYERS: Partial<Record<EngineName, string>> = { 'llama.cpp': 'engine-llama-cpp' };

/** The parts of a plan overlay templates and cmdline words see. */
type TemplateSource = Pick<Plan, 'hostname' | 'role' | 'board' | 'base' | 'disk' | 'tool'>;

/** The context every overlay template and cmdline word is rendered with. */
function templateContext(plan: TemplateSource): Record<string, unknown> {
  return {
    hostname: plan.hostname,
    role: plan.role,
    board: plan.board,
    suite: plan.base.suite,
    disk: plan.disk,
    tool: plan.tool,
  };
}

export function renderTemplate(source: string, plan: TemplateSource, name: string): string {
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

/**
 * config.txt, along one path: composed (the board's sections, each layer's, then
 * pi-image.yaml's), checked against the tuning profile (no overclock), then rendered after
 * an existing image's own config.txt, which is kept as it is (not checked). Null for boards
 * without a config.txt (the check still applies).
 */
function planConfigTxt(inputs: PlanInputs, imported: ImportedBase | undefined): string | null {
  const { board, layers, config, tuning } = inputs;
  const sections = concatSections(
    // An existing image brings its own kernel and the lines that load it.
    config.base ? undefined : board.boot.kernel_config_txt,
    board.boot.config_txt,
    ...layers.map((l) => l.config_txt),
    // NVMe on a Pi 5 sits behind the external PCIe connector, off by default.
    config.storage === 'nvme' ? { pi5: ['dtparam=pciex1'] } : undefined,
    config.config_txt,
  );
  const overclock = forbiddenConfigTxtKeys(tuning.levers, sections);
  if (overclock.length) {
    throw new ConfigError(
      `config.txt would overclock: ${overclock.map((h) => `"${h.line}" in [${h.section}]`).join(', ')}; the tuning profile ${tuning.profile.name} forbids it (lever ${overclock[0]?.lever})`,
      'the measured figures are at nominal clocks: remove the key from the layer or pi-image.yaml, or switch the lever off with tuning: { no_overclock: false }',
    );
  }
  if (!board.boot.config_txt) return null;
  return renderConfigTxt(concatSections(parseConfigTxt(imported?.configTxt ?? ''), sections));
}

/** Freezes an object and everything it holds. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

function planSystem(config: Config): Plan['system'] {
  try {
    new Intl.DateTimeFormat('en', { timeZone: config.timezone });
  } catch {
    throw new ConfigError(`timezone "${config.timezone}" is not a time zone${didYouMean(config.timezone, Intl.supportedValuesOf('timeZone'))}`, 'give an IANA name such as Europe/Berlin or Etc/UTC (`timedatectl list-timezones` lists them)');
  }
  return { timezone: config.timezone, locale: config.locale, ntpServers: config.ntp_servers };
}

function planEngine(inputs: PlanInputs): Plan['engine'] {
  const { config, board } = inputs;
  const name = config.engine.name ?? board.engine;
  const { engineBuild: build, debianRuntime } = inputs.node;
  const runtime = debianRuntime
    ? `${name} from Debian ${debianRuntime.suite} ${debianRuntime.arch} packages (${LLAMA_CPP_PACKAGES.join(', ')}), unpacked into the first runtime folder`
    : build
      ? `${build.engine} ${build.version} compiled from ${build.source} (${build.cxx} ${build.cxxflags})`
      : config.engine.dllama_dir
      ? `prebuilt binaries from ${config.engine.dllama_dir}`
      : 'none in the image';
  return { name, from: config.engine.name ? 'the config' : `the ${board.name} board's default`, runtime };
}

function planWarnings({ config, board }: PlanInputs): string[] {
  const warnings: string[] = [];
  if (!config.user.ssh_keys.length) warnings.push('no SSH key (user.ssh_keys, --ssh-key): nobody can log in to the nodes; `pi-image flash --ssh-key` can still add one per card');
  const raspberryPiArchive = config.apt.extra_sources.some((s) => s.uris.some((u) => /raspberrypi\.(com|org)/.test(u)));
  if (board.debian_kernel_caveat && !config.base && !raspberryPiArchive) warnings.push(board.debian_kernel_caveat);
  if (!config.model) warnings.push('no model (model.path, --model): the nodes assemble but have nothing to serve');
  return warnings;
}

/**
 * The plan of a build, from its inputs alone (pure, no I/O). A build on an existing disk
 * image is planned twice: before its base stage without `imported` (the base stage's key
 * does not depend on it), and after it with what the base stage read from the image — its
 * disk id (so PARTUUIDs stay), its boot partition's place and size, and its own config.txt
 * and cmdline.txt as the first layer of composition. That second plan is the final one.
 */
export function makePlan(inputs: PlanInputs, imported?: ImportedBase): Plan {
  const { config, board, layers, tuning, bootloader, keyrings, node, sourceDateEpoch } = inputs;
  const name = config.name ?? `pi-image-${board.name}`;
  // An existing image brings its own kernel and firmware: only what the layers and the config add is installed.
  const boardPackages = config.base ? [] : board.packages;
  const base: Plan['base'] = {
    suite: config.suite ?? board.suite,
    variant: board.variant,
    arch: board.arch,
    mirrors: config.mirrors,
    components: config.components ?? board.components,
    extraSources: config.apt.extra_sources,
    checkValidUntil: config.apt.check_valid_until,
    // Debian's minbase has C.UTF-8 only: locales-all brings every other locale, compiled.
    packages: [...new Set([...boardPackages, ...layers.flatMap((l) => l.packages), ...config.packages, ...(config.locale === 'C.UTF-8' ? [] : ['locales-all'])])].sort(),
    enableUnits: [...new Set(layers.flatMap((l) => l.base_enable))].sort(),
    initramfsModules: config.base ? undefined : board.initramfs_modules,
    image: config.base ? { source: config.base.image, sha256: config.base.sha256 } : undefined,
    keyrings,
  };
  const diskId = imported?.diskId ?? diskIdFor(name, board.name);
  const identity: TemplateSource = {
    tool: { name: 'pi-image', version: TOOL_VERSION },
    board: { name: board.name, description: board.description, arch: board.arch },
    role: config.role,
    hostname: config.hostname,
    base,
    disk: { diskId, bootPartuuid: `${diskId}-01`, rootPartuuid: `${diskId}-02`, headroomMib: config.rootfs.headroom_mib },
  };

  const plannedLayers: PlannedLayer[] = layers.map((layer) => ({
    name: layer.name,
    description: layer.description,
    origin: layer.origin,
    files: layer.overlay.map((f) => ({ path: f.path, sha256: f.sha256, template: f.template, ...fileMode(layer, f.path) })),
    remove: layer.remove,
    enable: layer.enable,
    mask: layer.mask,
  }));

  const cmdlineWords = [...board.boot.cmdline, ...layers.flatMap((l) => l.cmdline)].map((w, i) => renderTemplate(w, identity, `cmdline word ${i + 1}`));
  const boot: Plan['boot'] = {
    offsetMib: imported?.bootOffsetMib ?? board.boot.offset_mib,
    partitionMib: imported?.bootMib ?? board.boot.partition_mib,
    copy: config.base ? [] : board.boot.copy,
    // An existing image's own words first: a board or layer word with the same key replaces one.
    cmdline: renderCmdline([...parseCmdline(imported?.cmdline ?? ''), ...cmdlineWords]),
    configTxt: planConfigTxt(inputs, imported),
  };
  const planTuning: Plan['tuning'] = { profile: tuning.profile.name, levers: tuning.levers };

  // The image is identified by its content: the same file under another path or URL is the same base.
  const baseKey = contentHash({ recipe: STAGE_RECIPES.base, base: { ...base, image: base.image?.sha256, keyrings: base.keyrings.map((k) => k.sha256) } });
  const system = planSystem(config);
  // The tarball is identified by its hash, wherever it lies.
  const engineKey = node.engineBuild ? engineCacheKey(node.engineBuild) : node.debianRuntime ? debianRuntimeCacheKey(node.debianRuntime) : undefined;
  const layersKey = contentHash({
    recipe: STAGE_RECIPES.layers,
    base: baseKey,
    layers: plannedLayers.map(({ origin: _origin, ...rest }) => rest),
    context: templateContext(identity),
    boot,
    tuning: planTuning,
    bootloader,
    system,
    node: { settings: node.settings, files: node.files.map(({ source: _source, ...f }) => f), authorizedKeys: node.authorizedKeys },
    sde: sourceDateEpoch.value,
    ...(engineKey ? { engine: engineKey } : {}),
  });

  const plan: Plan = {
    tool: identity.tool,
    board: identity.board,
    role: identity.role,
    hostname: identity.hostname,
    system,
    base,
    layers: plannedLayers,
    tuning: planTuning,
    bootloader,
    node,
    engine: planEngine(inputs),
    boot,
    disk: identity.disk,
    sourceDateEpoch,
    compressionLevel: config.compression.level,
    outputs: {
      dir: config.out,
      img: `${name}.img`,
      zst: `${name}.img.zst`,
      bmap: `${name}.bmap`,
      sums: 'SHA256SUMS',
      manifest: 'manifest.json',
    },
    cacheKeys: { base: baseKey, layers: layersKey, ...(engineKey ? { engine: engineKey } : {}) },
    warnings: planWarnings(inputs),
  };
  // A copy: the plan shares nothing with its inputs, so freezing it leaves them alone.
  return deepFreeze(structuredClone(plan));
}

/**
 * The engine stage's key for llama.cpp from Debian's packages: the suite, architecture and
 * mirror (like the base rootfs, a cached entry is not refreshed when the suite moves on).
 */
export function debianRuntimeCacheKey(request: DebianRuntimeRequest): string {
  return contentHash({ recipe: STAGE_RECIPES.engine, debian: request, packages: LLAMA_CPP_PACKAGES });
}

/** The engine stage's cache key: the tarball is identified by its hash, wherever it lies. */
export function engineCacheKey(build: EngineBuild): string {
  return contentHash({ recipe: STAGE_RECIPES.engine, build: { ...build, source: undefined } });
}
