import { dirname, isAbsolute, join, relative } from 'node:path';
import { Document, isMap, isScalar, type Pair, type YAMLMap } from 'yaml';
import { loadSchema, schemaPath, type JsonSchema } from '../config/validate.js';
import type { InitAnswers } from './questions.js';

export const SECRET_FILE = 'cluster.secret';
export const TOKEN_FILE = 'api.token';
/** The update signing key pair (pi-image keys new): the private half stays next to the config. */
export const OTA_KEY_NAME = 'ota';

/** A file `pi-image init` creates: the config with its text, the secrets made fresh when written. */
export type InitFile =
  | { path: string; mode: number; what: string; content: string }
  | { path: string; mode: number; what: string; random: 'hex32' }
  /** An Ed25519 pair: `path` the private key (0600), `publicPath` beside it. */
  | { path: string; mode: number; what: string; keyPair: 'ed25519'; publicPath: string };

export interface InitOutput {
  /** The pi-image.yaml text, comments included. */
  text: string;
  /** What the text says, as data (what parsing it gives back). */
  config: Record<string, unknown>;
  files: InitFile[];
}

/** A path as the config holds it: relative to the config's folder when it is inside it, else absolute. */
function configPath(path: string, configDir: string): string {
  if (/^https?:\/\//.test(path)) return path;
  const rel = relative(configDir, path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? `./${rel}` : path;
}

/** The config's data for a set of answers (secrets referenced by their file, next to the config). */
export function configFromAnswers(answers: InitAnswers, configFile: string): Record<string, unknown> {
  const dir = dirname(configFile);
  const at = (p: string) => configPath(p, dir);
  const config: Record<string, unknown> = { board: answers.board };
  if (answers.storage && !(answers.board === 'qemu' && answers.storage === 'sd')) config.storage = answers.storage;
  if (answers.base === 'raspios' && answers.baseImage && answers.baseSha256) config.base = { image: at(answers.baseImage), sha256: answers.baseSha256 };
  config.tuning_profile = answers.tuningProfile;
  config.cluster = {
    name: answers.cluster,
    size: answers.clusterSize,
    secret_file: `./${SECRET_FILE}`,
    ...(answers.apiToken ? { api_token_file: `./${TOKEN_FILE}` } : {}),
  };
  if (answers.network === 'static' && answers.firstAddress) {
    config.network = { addresses: 'static', first_address: answers.firstAddress, ...(answers.gateway ? { gateway: answers.gateway } : {}), ...(answers.dns?.length ? { dns: answers.dns } : {}) };
  }
  config.engine = { name: answers.engine, ...(answers.engine === 'dllama' && answers.dllamaDir ? { dllama_dir: at(answers.dllamaDir) } : {}) };
  config.model = { path: at(answers.model), ...(answers.engine === 'dllama' && answers.tokenizer ? { tokenizer: at(answers.tokenizer) } : {}) };
  config.user = { ssh_keys: answers.sshKeys.map(at) };
  config.ota = { trusted_keys: [`./${OTA_KEY_NAME}.pub`] };
  return config;
}

/** Wraps a description into comment lines of at most `width` characters. */
export function wrapComment(text: string, width = 92): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

const asComment = (lines: string[]) => lines.map((l) => (l ? ` ${l}` : '')).join('\n');

/** Puts the schema's description of every key above it. */
function annotate(map: YAMLMap, schema: JsonSchema, top: boolean): void {
  for (const pair of map.items as Pair[]) {
    if (!isScalar(pair.key)) continue;
    const name = String(pair.key.value);
    const node = schema.properties?.[name];
    if (!node) continue;
    const flag = node['x-flag'] ? ` (pi-image build ${node['x-flag'].split(' ')[0]})` : '';
    const lines = wrapComment(`${node.description ?? ''}${flag}`);
    if (lines.length) pair.key.commentBefore = asComment(lines);
    // A blank line between top-level keys (the header's comment already ends with one).
    if (top && pair !== map.items[0]) pair.key.spaceBefore = true;
    if (isMap(pair.value)) annotate(pair.value, node, false);
  }
}

function header(answers: InitAnswers): string[] {
  const lines = [
    // Editors with the YAML language server check every key and value as you type.
    `yaml-language-server: $schema=${schemaPath('config')}`,
    '',
    'pi-image.yaml, written by `pi-image init`. Build the image with:',
    '  pi-image build --config pi-image.yaml',
    'Every key and its flag: image/schema/config.schema.json (README, "Configuration reference").',
    'Relative paths are relative to this file. Keep cluster.secret (and api.token) private: whoever',
    'holds the secret is a cluster member.',
  ];
  if (answers.board === 'pi5' && answers.base !== 'raspios') {
    lines.push(
      '',
      "NOTE: no `base:` image, so the base is built from Debian packages, whose kernel cannot drive",
      "the Pi 5's Ethernet (RP1). For working Pi 5 nodes add a Raspberry Pi OS Lite image as `base:`",
      '(README, "Raspberry Pi 5").',
    );
  }
  return lines;
}

/**
 * Pure: answers → the text of pi-image.yaml (each key with the schema's description above it)
 * and the files to create with their modes. The secrets are never in here, only the request
 * to make them (see write.ts).
 */
export function renderInit(answers: InitAnswers, configFile: string, schema: JsonSchema = loadSchema('config')): InitOutput {
  const config = configFromAnswers(answers, configFile);
  const doc = new Document(config);
  doc.commentBefore = asComment(header(answers));
  if (isMap(doc.contents)) annotate(doc.contents, schema, true);
  const text = doc.toString({ lineWidth: 0 });
  const dir = dirname(configFile);
  const files: InitFile[] = [
    { path: configFile, mode: 0o644, what: 'the configuration', content: text },
    { path: join(dir, SECRET_FILE), mode: 0o600, what: 'the cluster secret', random: 'hex32' },
  ];
  if (answers.apiToken) files.push({ path: join(dir, TOKEN_FILE), mode: 0o600, what: 'the API token (send it as "Authorization: Bearer …")', random: 'hex32' });
  files.push({ path: join(dir, `${OTA_KEY_NAME}.key`), publicPath: join(dir, `${OTA_KEY_NAME}.pub`), mode: 0o600, what: 'the update signing key (ota.pub beside it goes into the image; this one never does)', keyPair: 'ed25519' });
  return { text, config, files };
}
