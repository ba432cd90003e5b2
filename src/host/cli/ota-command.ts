import { createReadStream } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { PiImageError } from '../errors.js';
import { formatBytes } from '../flash/safety.js';
import { runCancellable } from './cancellable.js';
import type { BundleManifest } from '../../shared/ota/manifest.js';
import type { Reporter } from '../progress.js';

/** Where each engine's programs are in a runtime folder, by file name. */
const ENTRY_NAMES: Record<BundleManifest['engine'], { root: string[]; worker: string[] }> = {
  'llama.cpp': { root: ['llama-server'], worker: ['ggml-rpc-server', 'rpc-server'] },
  dllama: { root: ['dllama-api'], worker: ['dllama'] },
};

function summary(m: BundleManifest): string {
  const total = m.files.reduce((s, f) => s + f.size, 0);
  return `${m.kind} bundle: ${m.engine} ${m.version} for ${m.arch}, ${m.files.length} file(s), ${formatBytes(total)}, signed by key ${m.key}${m.entry ? `; root runs ${m.entry.root}, workers run ${m.entry.worker}` : ''}${m.health ? `; health: first ${m.health.tokens} token ids hash to ${m.health.tokenIdsSha256.slice(0, 12)}…` : ''}`;
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
  runtime
    .command('pack')
    .description("Pack a folder of engine programs and libraries into a signed OTA bundle (files hashed, manifest signed with Ed25519)")
    .argument('<dir>', 'the runtime folder (programs executable, libraries beside them)')
    .addOption(new Option('--engine <name>', 'the engine the programs are').choices(['llama.cpp', 'dllama']).makeOptionMandatory())
    .requiredOption('--engine-version <version>', "the engine's version (a newer one replaces an older one; an older one needs --allow-downgrade at push)")
    .option('--arch <arch>', 'Debian architecture the programs are built for', 'arm64')
    .requiredOption('--key <file>', 'the private update key (pi-image keys new)')
    .option('--root-entry <path>', "the root's program, relative to the folder (default: by the engine's name: llama-server, dllama-api)")
    .option('--worker-entry <path>', "the workers' program (default: ggml-rpc-server, dllama)")
    .option('-o, --out <file>', 'the bundle to write (default: pi-image-runtime-<engine>-<engine-version>-<arch>.bundle)')
    .option('--json', 'print the manifest as JSON')
    .action((dir: string, options: Record<string, unknown>) =>
      runCancellable(options, async ({ reporter }) => {
        const [{ filesOf, packBundle }, { loadPrivateKey }] = await Promise.all([import('../ota/bundle-write.js'), import('../ota/keys.js')]);
        const engine = options.engine as BundleManifest['engine'];
        const files = await filesOf(resolve(dir));
        const pick = (flag: unknown, names: string[], role: string) => {
          const path = typeof flag === 'string' ? flag : files.find((f) => names.includes(basename(f.path)) && f.mode === 0o755)?.path;
          if (!path) throw new PiImageError(`${dir} has no ${role} program (${names.join(' or ')}, executable)`, `name it with --${role}-entry PATH`);
          return path;
        };
        const entry = { root: pick(options.rootEntry, ENTRY_NAMES[engine].root, 'root'), worker: pick(options.workerEntry, ENTRY_NAMES[engine].worker, 'worker') };
        const out = resolve(String(options.out ?? `pi-image-runtime-${engine}-${options.engineVersion}-${options.arch}.bundle`));
        const manifest = await packBundle({ out, kind: 'runtime', engine, version: String(options.engineVersion), arch: String(options.arch), files, entry, privateKey: await loadPrivateKey(String(options.key)) });
        reporter.emit({ type: 'result', data: { bundle: out, manifest } });
        if (!options.json) process.stdout.write(`wrote ${out}: ${summary(manifest)}\n`);
      }),
    );
  addVerify(runtime, 'runtime').option('--arch <arch>', "the nodes' architecture: refuse a bundle built for another");
  return runtime;
}

export function modelCommand(): Command {
  const model = new Command('model').description('OTA bundles of the model: pack a GGUF (llama.cpp) or a .m with its .t (dllama), verify a bundle');
  model
    .command('pack')
    .description('Pack a model file into a signed OTA bundle')
    .argument('<model>', 'the model: a .gguf file (llama.cpp) or a .m file (dllama, with --tokenizer)')
    .option('--tokenizer <file>', "dllama's tokenizer (.t) that goes with a .m model")
    .option('--model-version <version>', "the model's version or name (default: the file's name)")
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
        const version = String(options.modelVersion ?? basename(file, extname(file)).replace(/[^A-Za-z0-9.+~_-]/g, '-').replace(/^[^A-Za-z0-9]+/, ''));
        const files = [
          { source: resolve(file), path: `model${ext}`, mode: 0o644 as const },
          ...(options.tokenizer ? [{ source: resolve(String(options.tokenizer)), path: 'tokenizer.t', mode: 0o644 as const }] : []),
        ];
        const out = resolve(String(options.out ?? `pi-image-model-${version}.bundle`));
        const manifest = await packBundle({ out, kind: 'model', engine, version, arch: 'all', files, privateKey: await loadPrivateKey(String(options.key)) });
        reporter.emit({ type: 'result', data: { bundle: out, manifest } });
        if (!options.json) process.stdout.write(`wrote ${out}: ${summary(manifest)}\n`);
      }),
    );
  addVerify(model, 'model');
  return model;
}
