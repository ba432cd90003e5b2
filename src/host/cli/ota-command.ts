import { createReadStream } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { PiImageError } from '../errors.js';
import { formatBytes } from '../flash/safety.js';
import { runCancellable } from './cancellable.js';
import type { BundleManifest } from '../../shared/ota/manifest.js';
import { versionFromFileName } from '../../shared/ota/version-info.js';
import type { Reporter } from '../progress.js';

/** Where each engine's programs are in a runtime folder, by file name. */
const ENTRY_NAMES: Record<BundleManifest['engine'], { root: string[]; worker: string[] }> = {
  'llama.cpp': { root: ['llama-server'], worker: ['ggml-rpc-server', 'rpc-server'] },
  dllama: { root: ['dllama-api'], worker: ['dllama'] },
};

function summary(m: BundleManifest): string {
  const total = m.files.reduce((s, f) => s + f.size, 0);
  return `${m.kind} bundle: ${m.engine} ${m.version} for ${m.arch}, ${m.files.length} file(s), ${formatBytes(total)}, signed by key ${m.key}${m.entry ? `; root runs ${m.entry.root}, workers run ${m.entry.worker}` : ''}${m.health ? `; health: ${JSON.stringify(m.health.prompt)} gives ${m.health.tokens} tokens whose ${m.health.textSha256 ? `text hashes to ${m.health.textSha256.slice(0, 12)}` : `ids hash to ${m.health.tokenIdsSha256?.slice(0, 12)}`}…` : ''}`;
}

async function verifyCommandAction(bundle: string, options: Record<string, unknown>, kind: BundleManifest['kind'], reporter: Reporter): Promise<void> {
  const [{ readBundle }, { loadPublicKeys }, { BundleError }] = await Promise.all([import('../../shared/ota/bundle-read.js'), import('../ota/keys.js'), import('../../shared/ota/manifest.js')]);
  const trust = (options.trust as string[] | undefined) ?? [];
  if (!trust.length) throw new PiImageError('say which public keys to trust: --trust ota.pub (repeat for more)');
  const trusted = await loadPublicKeys(trust);
  const { stat } = await import('node:fs/promises');
  if (!(await stat(bundle).then((st) => st.isFile(), () => false))) throw new PiImageError(`${bundle} does not exist or is not a file`);
  try {
    const manifest = await readBundle(createReadStream(bundle), { trusted, expect: { kind, ...(options.arch ? { arch: options.arch as string } : {}) } });
    reporter.emit({ type: 'result', data: { ok: true, manifest } });
    if (!options.json) process.stdout.write(`ok: ${summary(manifest)}\n`);
  } catch (e) {
    if (e instanceof BundleError) throw new PiImageError(`${bundle}: ${e.message}`, `refused (${e.code}); nothing was installed`);
    throw e;
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The manifest's health check from the pack flags, each checked. */
/** The health check's flags, the same for a runtime and a model bundle. */
function addHealthOptions(command: Command): Command {
  return command
    .option('--health-prompt <text>', 'the health check after a switch: this prompt at temperature 0 must give the expected output (with --health-text-sha256 or --health-token-ids-sha256)')
    .option('--health-tokens <n>', 'how many tokens the health check generates', '8')
    .option('--health-text-sha256 <hex>', 'SHA-256 of the text the health check must generate (any engine)')
    .option('--health-token-ids-sha256 <hex>', 'SHA-256 of the token ids it must generate, decimal and comma-separated (llama.cpp)');
}

function healthOption(options: Record<string, unknown>): { health?: NonNullable<BundleManifest['health']> } {
  const hashes = { textSha256: options.healthTextSha256, tokenIdsSha256: options.healthTokenIdsSha256 };
  if (options.healthPrompt === undefined) {
    if (hashes.textSha256 !== undefined || hashes.tokenIdsSha256 !== undefined) throw new PiImageError('a health hash needs --health-prompt, the prompt it was generated from');
    return {};
  }
  if (hashes.textSha256 === undefined && hashes.tokenIdsSha256 === undefined) throw new PiImageError('--health-prompt needs the output to expect: --health-text-sha256 or --health-token-ids-sha256');
  for (const [flag, value] of Object.entries(hashes)) {
    if (value !== undefined && !/^[0-9a-f]{64}$/.test(String(value))) throw new PiImageError(`--health-${flag === 'textSha256' ? 'text' : 'token-ids'}-sha256 must be 64 lowercase hex digits, not ${JSON.stringify(value)}`);
  }
  const tokens = Number(options.healthTokens);
  if (!Number.isSafeInteger(tokens) || tokens < 1 || tokens > 4096) throw new PiImageError(`--health-tokens must be 1 to 4096, not ${JSON.stringify(options.healthTokens)}`);
  return { health: { prompt: String(options.healthPrompt), tokens, ...(hashes.textSha256 !== undefined ? { textSha256: String(hashes.textSha256) } : {}), ...(hashes.tokenIdsSha256 !== undefined ? { tokenIdsSha256: String(hashes.tokenIdsSha256) } : {}) } };
}

/** `<runtime|model> verify <bundle>`: the bundle checked as a node checks it. */
function addVerify(parent: Command, kind: BundleManifest['kind']): Command {
  return parent
    .command('verify')
    .description(`Check a ${kind} bundle as a node does: its signature against the trusted keys, every file's size and SHA-256`)
    .argument('<bundle>')
    .option('--trust <file>', 'a trusted public key (repeat for more)', collect)
    .option('--json', 'print the result as JSON')
    .action((bundle: string, options: Record<string, unknown>) => runCancellable(options, ({ reporter }) => verifyCommandAction(bundle, options, kind, reporter)));
}

export function keysCommand(): Command {
  const keys = new Command('keys').description('The update signing key: OTA bundles are signed with it, nodes trust its public half');
  keys
    .command('new')
    .description('Make an Ed25519 key pair for signing OTA bundles: <name>.key (private, 0600: keep it off every image and log) and <name>.pub (list it in pi-image.yaml: ota.trusted_keys)')
    .option('--dir <dir>', 'where to write the two files', '.')
    .option('--name <name>', 'file name of the pair', 'ota')
    .option('-f, --force', 'replace an existing pair (images that trust the old key will refuse bundles signed with the new one)')
    .option('--json', 'print the paths and the key id as JSON')
    .action((options: Record<string, unknown>) =>
      runCancellable(options, async ({ reporter }) => {
        const { newKeyPair } = await import('../ota/keys.js');
        const made = await newKeyPair(resolve(String(options.dir)), String(options.name), Boolean(options.force));
        reporter.emit({ type: 'result', data: made });
        if (!options.json) process.stdout.write(`wrote ${made.privatePath} (private, 0600) and ${made.publicPath}; key id ${made.id}\nnext: list ${made.publicPath} under ota.trusted_keys in pi-image.yaml, keep ${made.privatePath} private\n`);
      }),
    );
  return keys;
}

export function runtimeCommand(): Command {
  const runtime = new Command('runtime').description('OTA bundles of the inference engine: pack a folder of programs, verify a bundle');
  addHealthOptions(runtime.command('pack'))
    .description("Pack engine programs into a signed OTA bundle (files hashed, manifest signed with Ed25519): a folder of them, llama.cpp from a Debian suite's packages, or dllama compiled from its source tarball for a board, each as the image build does")
    .argument('[dir]', 'the runtime folder (programs executable, libraries beside them); not with --engine-source or --debian-suite')
    .addOption(new Option('--engine <name>', 'the engine the programs are').choices(['llama.cpp', 'dllama']).makeOptionMandatory())
    .option('--engine-version <version>', "the engine's version (a newer one replaces an older one; an older one needs --allow-downgrade at push); with --engine-source, read from the tarball's name by default")
    .option('--engine-source <tarball>', "dllama's release tarball (path or https:// URL): compiled for --board by the build's engine stage, cached like it")
    .option('--engine-sha256 <hex>', 'the SHA-256 the tarball must have (with --engine-source)')
    .option('--debian-suite <suite>', "llama.cpp from this Debian suite's packages (forky, sid), fetched for --arch with apt (nothing installed here) and laid out as the image's first runtime; the version is the packages' unless --engine-version says otherwise")
    .option('--mirror <url>', 'the Debian mirror for --debian-suite', 'http://deb.debian.org/debian')
    .option('--library-path <dir>', "a folder's runtime: the folder of the programs' own shared libraries, relative to it (. for the folder itself); the engine runs with it first on the library path")
    .option('--board <name>', 'the board whose CPU the programs are compiled for (with --engine-source)', 'pi5')
    .option('--arch <arch>', 'Debian architecture the programs are built for', 'arm64')
    .requiredOption('--key <file>', 'the private update key (pi-image keys new)')
    .option('--root-entry <path>', "the root's program, relative to the folder (default: by the engine's name: llama-server, dllama-api)")
    .option('--worker-entry <path>', "the workers' program (default: ggml-rpc-server, dllama)")
    .option('-o, --out <file>', 'the bundle to write (default: pi-image-runtime-<engine>-<engine-version>-<arch>.bundle)')
    .option('--json', 'print the manifest as JSON')
    .action((dir: string | undefined, options: Record<string, unknown>, command: Command) => {
      // Usage mistakes exit 2 before any work, as commander's own do.
      if (options.engineSource !== undefined && options.debianSuite !== undefined) command.error('error: give --engine-source (dllama) or --debian-suite (llama.cpp), not both');
      if (options.debianSuite !== undefined) {
        if (dir !== undefined) command.error(`error: give a runtime folder (${dir}) or --debian-suite, not both`);
        if (options.engine !== 'llama.cpp') command.error("error: --debian-suite takes llama.cpp from Debian's packages: add --engine llama.cpp (dllama is compiled: --engine-source)");
        if (options.libraryPath !== undefined) command.error("error: --library-path goes with a runtime folder (a Debian suite's runtime has its libraries beside its programs)");
      } else if (options.engineSource !== undefined) {
        if (dir !== undefined) command.error(`error: give a runtime folder (${dir}) or --engine-source, not both`);
        if (options.engine !== 'dllama') command.error('error: --engine-source compiles dllama: add --engine dllama (llama.cpp comes from Debian packages: --debian-suite)');
      } else {
        if (dir === undefined) command.error('error: give the runtime folder to pack, --debian-suite for llama.cpp, or --engine-source with a dllama source tarball');
        if (options.engineVersion === undefined) command.error("error: --engine-version is needed with a runtime folder: the engine's version");
        if (options.engineSha256 !== undefined) command.error('error: --engine-sha256 goes with --engine-source');
      }
      return runCancellable(options, async ({ reporter, signal }) => {
        const [{ filesOf, packBundle }, { loadPrivateKey }] = await Promise.all([import('../ota/bundle-write.js'), import('../ota/keys.js')]);
        const engine = options.engine as BundleManifest['engine'];
        const key = await loadPrivateKey(String(options.key));
        let files: Awaited<ReturnType<typeof filesOf>>;
        let libraryPath = options.libraryPath as string | undefined;
        if (options.debianSuite !== undefined) {
          const { runtimeFromDebian } = await import('../ota/runtime-from-debian.js');
          const fetched = await runtimeFromDebian({ request: { suite: String(options.debianSuite), arch: String(options.arch), mirror: String(options.mirror) }, reporter, signal });
          files = fetched.files;
          libraryPath = fetched.libraryPath;
          options.engineVersion ??= fetched.version;
        } else if (options.engineSource !== undefined) {
          const { runtimeFromSource } = await import('../ota/runtime-from-source.js');
          const src = String(options.engineSource);
          const compiled = await runtimeFromSource({ source: /^https?:\/\//.test(src) ? src : resolve(src), sha256: options.engineSha256 as string | undefined, version: options.engineVersion as string | undefined, board: String(options.board), reporter, signal });
          files = compiled.files;
          options.engineVersion = compiled.version;
        } else {
          files = await filesOf(resolve(dir as string));
        }
        const pick = (flag: unknown, names: string[], role: string) => {
          const path = typeof flag === 'string' ? flag : files.find((f) => names.includes(basename(f.path)) && f.mode === 0o755)?.path;
          if (!path) throw new PiImageError(`${dir ?? 'the runtime'} has no ${role} program (${names.join(' or ')}, executable)`, `name it with --${role}-entry PATH`);
          return path;
        };
        const entry = { root: pick(options.rootEntry, ENTRY_NAMES[engine].root, 'root'), worker: pick(options.workerEntry, ENTRY_NAMES[engine].worker, 'worker') };
        const out = resolve(String(options.out ?? `pi-image-runtime-${engine}-${options.engineVersion}-${options.arch}.bundle`));
        const manifest = await packBundle({ out, kind: 'runtime', engine, version: String(options.engineVersion), arch: String(options.arch), files, entry, ...(libraryPath !== undefined ? { libraryPath } : {}), ...healthOption(options), privateKey: key });
        reporter.emit({ type: 'result', data: { bundle: out, manifest } });
        if (!options.json) process.stdout.write(`wrote ${out}: ${summary(manifest)}\n`);
      });
    });
  addVerify(runtime, 'runtime').option('--arch <arch>', "the nodes' architecture: refuse a bundle built for another");
  return runtime;
}

export function modelCommand(): Command {
  const model = new Command('model').description('OTA bundles of the model: pack a GGUF (llama.cpp) or a .m with its .t (dllama), verify a bundle');
  addHealthOptions(model.command('pack'))
    .description('Pack a model file into a signed OTA bundle')
    .argument('<model>', 'the model: a .gguf file (llama.cpp) or a .m file (dllama, with --tokenizer)')
    .option('--tokenizer <file>', "dllama's tokenizer (.t) that goes with a .m model")
    .option('--model-version <version>', "the model's version or name, other than the one the nodes serve (default: the file's name)")
    .requiredOption('--key <file>', 'the private update key (pi-image keys new)')
    .option('-o, --out <file>', 'the bundle to write (default: pi-image-model-<model-version>.bundle)')
    .option('--json', 'print the manifest as JSON')
    .action((file: string, options: Record<string, unknown>) =>
      runCancellable(options, async ({ reporter }) => {
        const [{ packBundle }, { loadPrivateKey }] = await Promise.all([import('../ota/bundle-write.js'), import('../ota/keys.js')]);
        const ext = extname(file).toLowerCase();
        if (ext !== '.gguf' && ext !== '.m') throw new PiImageError(`${file}: a model is a .gguf file (llama.cpp) or a .m file (dllama)`);
        const engine: BundleManifest['engine'] = ext === '.gguf' ? 'llama.cpp' : 'dllama';
        if (engine === 'dllama' && !options.tokenizer) throw new PiImageError(`${file} is a dllama model: give its tokenizer with --tokenizer FILE.t`);
        if (engine === 'llama.cpp' && options.tokenizer) throw new PiImageError('--tokenizer goes with a dllama .m model; a GGUF holds its tokenizer');
        const version = String(options.modelVersion ?? versionFromFileName(basename(file)));
        const files = [
          { source: resolve(file), path: `model${ext}`, mode: 0o644 as const },
          ...(options.tokenizer ? [{ source: resolve(String(options.tokenizer)), path: 'tokenizer.t', mode: 0o644 as const }] : []),
        ];
        const out = resolve(String(options.out ?? `pi-image-model-${version}.bundle`));
        const manifest = await packBundle({ out, kind: 'model', engine, version, arch: 'all', files, ...healthOption(options), privateKey: await loadPrivateKey(String(options.key)) });
        reporter.emit({ type: 'result', data: { bundle: out, manifest } });
        if (!options.json) process.stdout.write(`wrote ${out}: ${summary(manifest)}\n`);
      }),
    );
  addVerify(model, 'model');
  return model;
}

interface StatusView {
  node: string;
  hostname?: string;
  role: string;
  root?: string;
  engine?: string;
  runtime: Versions;
  model: Versions;
  nodes: { node: string; hostname?: string; address: string; runtime: Versions; model: Versions }[];
  update?: { id: string; kind: string; version: string; from: string; phase: string; reason?: string; started: string };
  last?: { id: string; kind: string; version: string; from: string; phase: string; reason?: string; started: string; ended?: string; timings?: Record<string, number>; nodes?: Record<string, { fetched?: number }> };
}

type Versions = { current?: string; previous?: string; installed?: string[]; error?: string };

function formatOtaStatus(s: StatusView): string {
  const versions = (v: Versions | undefined) => (v?.error ? `unreachable: ${v.error}` : `${v?.current ?? '(none)'}${v?.previous ? ` (previous ${v.previous})` : ''}`);
  const row = (node: string, role: string, n: { runtime: Versions; model: Versions }) => `  ${node.padEnd(18)}${role.padEnd(8)}${versions(n.runtime).padEnd(30)}${versions(n.model)}`;
  const describe = (u: NonNullable<StatusView['update']>) => `${u.id}: ${u.kind ?? 'runtime'} ${u.from || '(none)'} → ${u.version}, ${u.phase}${u.reason ? ` (${u.reason})` : ''}`;
  return [
    `${s.role === 'root' ? 'root' : `a ${s.role}${s.root ? ` of ${s.root}` : ''}`} ${s.node}${s.engine ? `, engine ${s.engine}` : ''}`,
    `  ${'NODE'.padEnd(18)}${'ROLE'.padEnd(8)}${'RUNTIME'.padEnd(30)}MODEL`,
    row(s.node, s.role, s),
    ...s.nodes.map((n) => row(n.node, 'worker', n)),
    `update     ${s.update ? describe(s.update) : 'none in progress'}`,
    `last       ${s.last ? `${describe(s.last)}${s.last.ended ? `, ended ${s.last.ended}` : ''}` : 'none'}`,
  ].join('\n') + '\n';
}

export function otaCommand(): Command {
  const ota = new Command('ota').description("Update a running cluster's engine or model over the network: push a signed bundle to the root, see every node's versions");
  const common = (c: Command) =>
    c
      .requiredOption('--cluster <address>', "the root's address (host or host:port; port 47477 by default)")
      .requiredOption('--key <file>', 'the private update key (pi-image keys new): the credential only the cluster owner has')
      .option('--json', 'print events and the result as JSON lines');
  common(
    ota
      .command('push')
      .description('Send a runtime or model bundle to the root: it is verified whole before anything changes, staged on every node, switched on all at once, health-checked, then committed everywhere or rolled back everywhere')
      .argument('<bundle>', 'a bundle made by `pi-image runtime pack` or `pi-image model pack`')
      .option('--allow-downgrade', 'accept a runtime version not newer than the running one')
      .option('--no-wait', 'return once the root took the bundle, without following the update'),
  ).action((bundle: string, options: Record<string, unknown>) =>
    runCancellable(options, async ({ reporter, signal }) => {
      const [{ clusterEndpoint, otaPush, otaStatus }, { loadPrivateKey }] = await Promise.all([import('../ota/cluster-client.js'), import('../ota/keys.js')]);
      const endpoint = clusterEndpoint(String(options.cluster));
      const key = await loadPrivateKey(String(options.key));
      const started = Date.now();
      reporter.emit({ type: 'stage-start', stage: 'ota', title: `pushing ${basename(bundle)} to ${endpoint.host}` });
      const record = (await otaPush(endpoint, key, resolve(bundle), { allowDowngrade: Boolean(options.allowDowngrade) })) as NonNullable<StatusView['update']>;
      reporter.emit({ type: 'stage-progress', stage: 'ota', detail: `update ${record.id}: ${record.kind} ${record.from || '(none)'} → ${record.version}, ${record.phase}` });
      if (options.wait === false) {
        reporter.emit({ type: 'result', data: record });
        if (!options.json) process.stdout.write(`update ${record.id} taken by the root; follow it with pi-image ota status\n`);
        return;
      }
      let phase = record.phase;
      let ended: StatusView['last'];
      while (!ended) {
        if (signal.aborted) throw signal.reason;
        await new Promise((r) => setTimeout(r, 2000));
        const status = (await otaStatus(endpoint, key).catch(() => undefined)) as StatusView | undefined;
        if (!status) continue; // the root may be busy restarting its engine
        const now = status.update?.id === record.id ? status.update : status.last?.id === record.id ? status.last : undefined;
        if (now && now.phase !== phase) {
          phase = now.phase;
          reporter.emit({ type: 'stage-progress', stage: 'ota', detail: `update ${record.id}: ${phase}` });
        }
        if (status.last?.id === record.id) ended = status.last;
      }
      reporter.emit({ type: 'stage-end', stage: 'ota', cached: false, seconds: (Date.now() - started) / 1000 });
      reporter.emit({ type: 'result', data: ended });
      if (ended.phase !== 'committed') throw new PiImageError(`update ${ended.id} ${ended.phase}: ${ended.reason ?? 'no reason given'}`, ended.phase === 'rolled-back' ? `every node is back on ${ended.from}` : 'nothing was changed on any node');
      if (!options.json) process.stdout.write(`update ${ended.id}: every node runs ${ended.kind} ${ended.version} (was ${ended.from || 'none'}), in ${Math.round((Date.now() - started) / 1000)} s\n`);
    }),
  );
  common(ota.command('status').description("Every node's runtime and model versions (current and previous), the update in progress and the last one's outcome")).action((options: Record<string, unknown>) =>
    runCancellable(options, async ({ reporter }) => {
      const [{ clusterEndpoint, otaStatus }, { loadPrivateKey }] = await Promise.all([import('../ota/cluster-client.js'), import('../ota/keys.js')]);
      const status = (await otaStatus(clusterEndpoint(String(options.cluster)), await loadPrivateKey(String(options.key)))) as unknown as StatusView;
      reporter.emit({ type: 'result', data: status });
      if (!options.json) process.stdout.write(formatOtaStatus(status));
    }),
  );
  return ota;
}
