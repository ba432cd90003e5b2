import { readDllamaHeader } from '../model/dllama-header.js';
import { readGgufHeader } from '../model/gguf-header.js';
import { secretProblem } from '../../shared/secrets.js';
import { access, constants, readFile, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Config } from '../config/config.js';
import { ConfigError } from '../errors.js';
import type { NodeSettings } from '../../shared/node-settings.js';
import { inRootfs, MODEL_CURRENT, modelVersionDir, OTA_TRUSTED_KEYS_DIR, RUNTIME_CURRENT, runtimeVersionDir } from '../../shared/node-paths.js';
import { versionFromFileName, type ModelInfo, type RuntimeInfo } from '../../shared/ota/version-info.js';
import { keyId, publicKeyFromPem } from '../../shared/ota/manifest.js';
import { parsePublicKeyFile } from '../../shared/ssh-key.js';
import { DISCOVERY_PORT } from '../../shared/ports.js';
import { ENGINES } from '../../shared/engines/index.js';
import { sha256OfFile } from '../../shared/file-hash.js';
import type { BoardProfile } from '../catalog/boards.js';
import type { DebianRuntimeRequest } from '../pipeline/stages/engine-debian.js';
import { budgetProblem, memoryBudget, type MemoryBudget, type ModelShape } from './memory-budget.js';

/** A file from the build machine that lands in the root filesystem. */
export interface ImageFile {
  source: string;
  /** Path in the rootfs, without a leading slash. */
  target: string;
  sha256: string;
  size: number;
  mode: number;
}

/** What the node agent gets from the build: its settings, the model, engine binaries, login keys, secrets. */
export interface NodePlan {
  settings: NodeSettings;
  files: ImageFile[];
  authorizedKeys: string;
  /** Files put on the boot partition (pi-image/) and moved off it at first boot. Only paths here: never the content. */
  secrets: { name: 'cluster.secret' | 'api.token'; source: string | null }[];
  /** The engine compiled from its source tarball by the engine stage, when the config gives one. */
  engineBuild?: EngineBuild;
  /** llama.cpp's first runtime: the engine stage takes it from these Debian packages (its version is theirs, known once fetched). */
  debianRuntime?: DebianRuntimeRequest;
  /** The image's first runtime in the versioned layout OTA updates use, when its version is known before the build (dllama). */
  runtime?: RuntimeInfo;
  /** The image's model in the versioned layout OTA model updates use. */
  modelInfo?: ModelInfo;
  /** Each node's memory need against the board's RAM, when the model's header tells its shape. */
  memory?: MemoryBudget;
}

/** How the engine stage compiles dllama: everything its cache key depends on. */
export interface EngineBuild {
  engine: 'dllama';
  version: string;
  /** A path on this machine or an https:// URL. */
  source: string;
  sha256: string;
  /** The cross compiler on an x86 host, the native one on an arm64 host. */
  cxx: string;
  cxxflags: string;
  libs: string;
  targets: string[];
}

/** dllama's version from its release tarball's name: distributed-llama-0.16.4.tar.gz, v0.16.4.tar.gz. */
export function versionFromSourceName(source: string): string | undefined {
  return /(?:^|[-_v])(\d+\.\d+\.\d+)\.(?:tar\.gz|tgz|tar\.xz|tar)$/.exec(basename(source))?.[1];
}

/** How dllama is compiled from `engine.source` for a board (the image's engine stage, and `runtime pack --engine-source`). */
export async function planEngineBuild(engine: Pick<Config['engine'], 'source' | 'sha256' | 'version' | 'dllama_dir'>, board: BoardProfile): Promise<EngineBuild> {
  const source = engine.source as string;
  if (engine.dllama_dir) throw new ConfigError('engine.source and engine.dllama_dir are both set', 'give the source tarball to compile, or the folder of prebuilt binaries, not both');
  if (!engine.sha256) throw new ConfigError('engine.source needs engine.sha256', `pin the tarball: sha256sum ${basename(source)}`);
  const version = engine.version ?? versionFromSourceName(source);
  if (!version) throw new ConfigError(`engine.version: cannot tell the dllama version from the name ${basename(source)}`, `set engine.version (${ENGINES.dllama.knownVersions.join(', ')})`);
  if (!/^https?:\/\//.test(source)) {
    const st = await stat(source).catch(() => undefined);
    if (!st?.isFile()) throw new ConfigError(`engine.source: ${source} does not exist or is not a file`, 'give the path of the downloaded source tarball (relative paths are relative to the config file), or its https:// URL');
  }
  return {
    engine: 'dllama',
    version,
    source,
    sha256: engine.sha256,
    cxx: process.arch === 'arm64' ? 'g++' : 'aarch64-linux-gnu-g++',
    // dllama's Makefile adds -march=native: the build machine's CPU, not the board's. These replace its flags.
    cxxflags: `-std=c++11 -O3 -mcpu=${board.cpu}`,
    // Static: the binaries run on whatever C++ runtime the image has.
    libs: '-lpthread -static',
    targets: ['dllama', 'dllama-api'],
  };
}

const safeName = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_');

async function imageFile(source: string, target: string, mode: number, what: string): Promise<ImageFile> {
  const st = await stat(source).catch(() => undefined);
  if (!st?.isFile()) throw new ConfigError(`${what}: ${source} is not a file`, 'give the path of the file on this machine');
  return { source, target, sha256: await sha256OfFile(source), size: st.size, mode };
}

async function readSecretFile(path: string, what: string): Promise<void> {
  const data = await readFile(path).catch(() => {
    throw new ConfigError(`${what}: cannot read ${path}`, 'give the path of a file that holds it (e.g. made with `openssl rand -hex 32 > cluster.secret`)');
  });
  const problem = secretProblem(data);
  if (problem) throw new ConfigError(`${what}: ${path} ${problem}`, 'make one with `openssl rand -hex 32 > cluster.secret`');
}

/** Reads and checks every file the node part of the config names (absolute paths: see resolveConfig). */
export async function planNode(config: Config, board: BoardProfile): Promise<NodePlan> {
  const engine = config.engine.name ?? board.engine;
  const files: ImageFile[] = [];
  let model: NodeSettings['model'] = null;
  let kvHeads: number | undefined;
  let shape: ModelShape | undefined;
  let contextLength = config.engine.context_length;
  let modelInfo: ModelInfo | undefined;
  if (config.model) {
    // In the versioned layout an OTA model update replaces: versions/<version>/<file>, `current` to it.
    const modelVersion = config.model.version ?? versionFromFileName(basename(config.model.path));
    const fileName = safeName(basename(config.model.path));
    modelInfo = { engine, version: modelVersion, file: fileName };
    const modelFile = await imageFile(config.model.path, `${inRootfs(modelVersionDir(modelVersion))}/${fileName}`, 0o644, 'model.path');
    files.push(modelFile);
    model = { path: `${MODEL_CURRENT}/${fileName}`, name: config.model.name ?? safeName(basename(config.model.path, extname(config.model.path))) };
    if (config.model.aliases?.length) {
      if (config.model.aliases.includes(model.name)) throw new ConfigError(`model.aliases: "${model.name}" is the model's own id`, 'list only other names');
      model.aliases = config.model.aliases;
    }
    if (engine === 'llama.cpp' && !config.model.path.endsWith('.gguf')) throw new ConfigError(`model.path: llama.cpp loads .gguf files, not ${basename(config.model.path)}`);
    if (config.model.path.endsWith('.gguf')) {
      const header = await readGgufHeader(config.model.path).catch((e: Error) => {
        throw new ConfigError(`model.path: ${config.model?.path}: ${e.message}`, 'give a GGUF model file (llama.cpp), e.g. one written by `pi-image tiny-model`');
      });
      kvHeads = header.kvHeads;
      const { layers, embedding, heads } = header;
      if (layers && embedding && heads && kvHeads) shape = { fileBytes: modelFile.size, layers, kvDim: (embedding / heads) * kvHeads, rootExtraBytes: 0 };
    }
    if (engine === 'dllama') {
      const header = await readDllamaHeader(config.model.path).catch((e: Error) => {
        throw new ConfigError(`model.path: ${config.model?.path}: ${e.message}`, 'dllama loads .m models made by its converter');
      });
      kvHeads = header.kvHeads;
      const { layers, dim, heads, vocabSize, maxSeqLen } = header;
      if (layers && dim && heads && kvHeads) {
        // The root keeps the token embedding in F32 (src/llm.cpp); the KV cache holds at most the model's sequence length.
        shape = { fileBytes: modelFile.size, layers, kvDim: (header.headDim ?? dim / heads) * kvHeads, rootExtraBytes: (vocabSize ?? 0) * dim * 4 };
        if (maxSeqLen) contextLength = Math.min(contextLength, maxSeqLen);
      }
    }
    if (engine === 'dllama') {
      if (!config.model.tokenizer) throw new ConfigError('model.tokenizer: dllama needs the tokenizer file (.t) that belongs to the model');
      const tokenizerName = safeName(basename(config.model.tokenizer));
      if (tokenizerName === modelInfo.file) throw new ConfigError('model.tokenizer has the same file name as model.path', 'rename one of them');
      const tokenizer = await imageFile(config.model.tokenizer, `${inRootfs(modelVersionDir(modelInfo.version))}/${tokenizerName}`, 0o644, 'model.tokenizer');
      files.push(tokenizer);
      model.tokenizer = `${MODEL_CURRENT}/${tokenizerName}`;
      modelInfo.tokenizer = tokenizerName;
    }
  }
  for (const key of ['dllama_dir', 'source', 'version', 'temperature'] as const) {
    if (config.engine[key] !== undefined && engine !== 'dllama') throw new ConfigError(`engine.${key} is set but the engine is ${engine}`, `add engine: { name: dllama } or drop ${key}`);
  }
  if (config.engine.version && !ENGINES.dllama.knownVersions.includes(config.engine.version)) {
    throw new ConfigError(`engine.version: dllama ${config.engine.version} is not a version pi-image knows the flags of`, `known: ${ENGINES.dllama.knownVersions.join(', ')}`);
  }
  const engineBuild = engine === 'dllama' && config.engine.source ? await planEngineBuild(config.engine, board) : undefined;
  if (engineBuild && !ENGINES.dllama.knownVersions.includes(engineBuild.version)) {
    throw new ConfigError(`engine.source: dllama ${engineBuild.version} is not a version pi-image knows the flags of`, `known: ${ENGINES.dllama.knownVersions.join(', ')}`);
  }
  // Chosen (or given a model to serve), dllama without its binaries would build an image that cannot serve.
  if (engine === 'dllama' && !config.engine.dllama_dir && !engineBuild && (config.engine.name === 'dllama' || config.model)) {
    throw new ConfigError(
      'engine dllama: its binaries are not in Debian; give engine.source (its source tarball, compiled during the build) or engine.dllama_dir (a folder with prebuilt arm64 dllama and dllama-api)',
      'set engine.source and engine.sha256 (--engine-source, --engine-sha256) or engine.dllama_dir (--dllama-dir), or use engine: { name: llama.cpp }',
    );
  }
  const runtime: RuntimeInfo | undefined =
    engine === 'dllama' && (engineBuild || config.engine.dllama_dir)
      ? { engine: 'dllama', version: engineBuild?.version ?? config.engine.version ?? (ENGINES.dllama.knownVersions.at(-1) as string), entry: { root: 'dllama-api', worker: 'dllama' } }
      : undefined;
  if (runtime && config.engine.dllama_dir) {
    for (const binary of ['dllama', 'dllama-api']) {
      const source = join(config.engine.dllama_dir, binary);
      await access(source, constants.X_OK).catch(() => {
        throw new ConfigError(`engine.dllama_dir: ${source} is missing or not executable`, 'the folder must hold prebuilt arm64 dllama and dllama-api binaries');
      });
      files.push(await imageFile(source, `${inRootfs(runtimeVersionDir(runtime.version))}/${binary}`, 0o755, 'engine.dllama_dir'));
    }
  }
  // llama.cpp's packages are not installed in the image: their files make the image's first runtime folder.
  const debianRuntime: DebianRuntimeRequest | undefined =
    engine === 'llama.cpp' ? { suite: config.suite ?? board.suite, arch: board.arch, mirror: config.mirrors[0] ?? 'http://deb.debian.org/debian' } : undefined;
  const shapeProblems = ENGINES[engine].checkCluster(config.cluster.size, { kvHeads });
  if (shapeProblems.length) {
    // A rule of an engine the user never chose must say where that engine came from.
    const chosen = config.engine.name ? '' : ` (${engine} is the ${board.name} board's default engine)`;
    throw new ConfigError(`cluster.size ${config.cluster.size}: ${shapeProblems.join('; ')}${chosen}`, `change --cluster-size, or choose the engine with --engine (${Object.keys(ENGINES).join(', ')})`);
  }
  const memory = shape
    ? memoryBudget({ engine, model: shape, nodes: config.cluster.size, contextLength, ramMib: config.board_ram_mib ?? board.memory.ram_mib, reservedMib: board.memory.reserved_mib })
    : undefined;
  const tooBig = memory && budgetProblem(memory, contextLength);
  if (tooBig) throw new ConfigError(`memory: ${tooBig.problem}`, tooBig.hint);
  const keys: string[] = [];
  for (const file of config.user.ssh_keys) {
    const text = await readFile(file, 'utf8').catch(() => {
      throw new ConfigError(`user.ssh_keys: cannot read ${file}`, 'give the path of a public key file, e.g. ~/.ssh/id_ed25519.pub');
    });
    const parsed = parsePublicKeyFile(text);
    if ('problem' in parsed) throw new ConfigError(`user.ssh_keys: ${file} ${parsed.problem}`, 'give the .pub file');
    keys.push(...parsed.map((k) => k.line));
  }
  for (const file of config.ota.trusted_keys) {
    const text = await readFile(file, 'utf8').catch(() => {
      throw new ConfigError(`ota.trusted_keys: cannot read ${file}`, 'give the .pub file `pi-image keys new` wrote');
    });
    if (text.includes('PRIVATE KEY')) throw new ConfigError(`ota.trusted_keys: ${file} is a PRIVATE key: never put that in an image`, 'give the .pub file beside it');
    let id: string;
    try {
      id = keyId(publicKeyFromPem(text, file));
    } catch (e) {
      throw new ConfigError(`ota.trusted_keys: ${(e as Error).message}`, 'give the .pub file `pi-image keys new` wrote');
    }
    files.push(await imageFile(file, `${inRootfs(OTA_TRUSTED_KEYS_DIR)}/${id}.pub`, 0o644, 'ota.trusted_keys'));
  }
  const secrets: NodePlan['secrets'] = [{ name: 'cluster.secret', source: config.cluster.secret_file ?? null }];
  if (config.cluster.secret_file) await readSecretFile(config.cluster.secret_file, 'cluster.secret_file');
  if (config.cluster.api_token_file) {
    await readSecretFile(config.cluster.api_token_file, 'cluster.api_token_file');
    secrets.push({ name: 'api.token', source: config.cluster.api_token_file });
  }
  return {
    settings: { ...nodeSettings(config, board, model, engineBuild?.version ?? config.engine.version), ...(memory ? { engineMemoryMib: engineShare(memory) } : {}) },
    files,
    authorizedKeys: keys.length ? `${keys.join('\n')}\n` : '',
    secrets,
    ...(engineBuild ? { engineBuild } : {}),
    ...(debianRuntime ? { debianRuntime } : {}),
    ...(runtime ? { runtime } : {}),
    ...(modelInfo ? { modelInfo } : {}),
    ...(memory ? { memory } : {}),
  };
}

/** What each role's engine process may hold: its total less what the OS and agent keep. */
function engineShare(m: MemoryBudget): NonNullable<NodeSettings['engineMemoryMib']> {
  const share = (n: MemoryBudget['root']) => n.totalMib - n.reservedMib;
  return { root: share(m.root), ...(m.worker ? { worker: share(m.worker) } : {}) };
}

/** What /etc/pi-image/node.json says, from the config and the board. */
function nodeSettings(config: Config, board: BoardProfile, model: NodeSettings['model'], version: string | undefined): NodeSettings {
  return {
    cluster: { name: config.cluster.name, size: config.cluster.size, apiPort: config.cluster.api_port, discoveryPort: DISCOVERY_PORT, failoverGraceSeconds: config.cluster.failover_grace, corsOrigins: config.cluster.api_cors_origins },
    role: config.role,
    engine: { name: config.engine.name ?? board.engine, binDir: RUNTIME_CURRENT, contextLength: config.engine.context_length, ...(version ? { version } : {}), ...(config.engine.temperature !== undefined ? { temperature: config.engine.temperature } : {}) },
    model,
    user: { name: config.user.name },
    ota: { keepVersions: config.ota.keep_versions },
  };
}
