import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../errors.js';
import { loadSchema, validateAgainst, type JsonSchema } from './validate.js';

export interface AptSource {
  uris: string[];
  suites: string[];
  components: string[];
  /** Keyring path on the build host (absolute). */
  signed_by?: string;
}

/** pi-image.yaml after validation and defaults (see image/schema/config.schema.json); every path in it is absolute. */
export interface Config {
  board: string;
  role: 'auto' | 'root' | 'worker';
  name?: string;
  out: string;
  hostname: string;
  timezone: string;
  locale: string;
  ntp_servers: string[];
  storage: 'sd' | 'nvme' | 'usb';
  board_ram_mib?: number;
  base?: { image: string; sha256: string };
  suite?: string;
  mirrors: string[];
  components?: string[];
  apt: { check_valid_until: boolean; extra_sources: AptSource[] };
  packages: string[];
  /** Built-in layers by name, user layers by their (absolute) folder. */
  layers: string[];
  config_txt: Record<string, string[]>;
  tuning_profile?: string;
  tuning: Record<string, boolean | string | number>;
  bootloader: {
    sdram_banklow?: number;
    boot_order?: ('sd' | 'usb' | 'nvme' | 'network')[];
    pcie_probe?: number;
    power_off_on_halt?: number;
    extra?: Record<string, string | number>;
    image?: string;
    recovery?: string;
  };
  cluster: { name: string; size: number; secret_file?: string; api_port: number; api_token_file?: string; failover_grace: number; api_cors_origins: string[] };
  network: { addresses: 'dhcp' | 'static'; first_address?: string; gateway?: string; dns: string[]; interface: string };
  engine: { name?: 'llama.cpp' | 'dllama'; dllama_dir?: string; source?: string; sha256?: string; version?: string; temperature?: number; context_length: number };
  model?: { path: string; tokenizer?: string; name?: string; version?: string; aliases: string[] };
  user: { name: string; ssh_keys: string[] };
  ota: { trusted_keys: string[]; keep_versions: number };
  rootfs: { headroom_mib: number };
  compression: { level: number };
  source_date_epoch?: number;
}

/** One setting exposed as a command-line flag, derived from the schema's `x-flag`. */
export interface FlagSpec {
  path: string[];
  flag: string;
  description: string;
  schema: JsonSchema;
}

export function configFlags(schema: JsonSchema = loadSchema('config'), prefix: string[] = []): FlagSpec[] {
  const specs: FlagSpec[] = [];
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const path = [...prefix, key];
    if (prop['x-flag']) {
      const dflt = prop.default === undefined ? '' : ` (default: ${JSON.stringify(prop.default)})`;
      const allowed = prop.enum ? ` [${prop.enum.join('|')}]` : '';
      specs.push({ path, flag: prop['x-flag'], description: `${prop.description ?? ''}${allowed}${dflt}`, schema: prop });
    }
    if (prop.properties) specs.push(...configFlags(prop, path));
  }
  return specs;
}

/** commander's attribute name for a flag: `--zstd-level <n>` → zstdLevel. */
export function flagAttribute(flag: string): string {
  const long = /--([a-z0-9-]+)/.exec(flag)?.[1] ?? flag;
  return long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Converts a flag's raw text to the schema's type, leaving bad input for the validator to name. */
export function coerceFlagValue(schema: JsonSchema, raw: unknown): unknown {
  if (schema.type === 'integer' && typeof raw === 'string' && /^-?\d+$/.test(raw)) return Number(raw);
  if (schema.type === 'number' && typeof raw === 'string' && /^-?(\d+\.?\d*|\.\d+)$/.test(raw)) return Number(raw);
  return raw;
}

async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`, 'check the --config path');
  }
  try {
    const doc: unknown = parseYaml(text) ?? {};
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${path}: the top level must be a mapping of keys`);
    return doc as Record<string, unknown>;
  } catch (e) {
    if (e instanceof YAMLParseError) throw new ConfigError(`${path}: not valid YAML: ${e.message}`);
    throw e;
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

/**
 * File, then flags (flags win), then validation with defaults filled in, then every path made
 * absolute (see absolutePaths): the rest of pi-image only ever sees absolute paths.
 */
export function resolveConfig(
  file: Record<string, unknown>,
  flags: Record<string, unknown>,
  opts: { source?: string; dir?: string } = {},
): Config {
  const merged = structuredClone(file);
  for (const spec of configFlags()) {
    const value = flags[flagAttribute(spec.flag)];
    if (value !== undefined) setPath(merged, spec.path, coerceFlagValue(spec.schema, value));
  }
  const problems = validateAgainst('config', merged);
  if (problems.length) {
    throw new ConfigError(
      `invalid configuration (${opts.source ?? 'config'}):\n  - ${problems.join('\n  - ')}`,
      'fix the keys above in pi-image.yaml or the flags; `pi-image build --help` lists every setting',
    );
  }
  const config = merged as unknown as Config;
  const dir = opts.dir ?? process.cwd();
  // --out is relative to where pi-image runs; `out:` in the file to the file.
  absolutePaths(config, dir, file.out !== undefined && flags.out === undefined ? dir : process.cwd());
  return config;
}

/** pi-image.yaml (if given) and the command line's flags. */
/** The config file read when --config is not given, if it is in the working directory (as mkosi reads mkosi.conf). */
export const DEFAULT_CONFIG_FILE = 'pi-image.yaml';

/** The config file a command reads: `--config`, else ./pi-image.yaml when there is one, else none (flags and defaults). */
export async function findConfigFile(path: string | undefined, cwd = process.cwd()): Promise<string | undefined> {
  if (path) return path;
  const here = join(cwd, DEFAULT_CONFIG_FILE);
  return (await stat(here).then((s) => s.isFile(), () => false)) ? here : undefined;
}

/** The line a command prints to say which config it reads. */
export const configSourceLine = (file: string | undefined) => `config: ${file ?? `none (no ${DEFAULT_CONFIG_FILE} here): flags and defaults`}\n`;

export async function loadConfig(path: string | undefined, flags: Record<string, unknown>, cwd = process.cwd()): Promise<Config> {
  const found = await findConfigFile(path, cwd);
  const file = found ? await readConfigFile(found) : {};
  // Relative paths in a config file are relative to the file, not to where pi-image runs.
  return resolveConfig(file, flags, { source: found ?? 'flags', dir: found ? dirname(resolve(found)) : cwd });
}

/** A layer given by its folder (a path: it has a slash or starts with a dot); a bare name is a built-in layer. */
const isLayerPath = (ref: string) => ref.includes('/') || ref.startsWith('.');
const isUrl = (source: string) => /^https?:\/\//.test(source);

/** Makes every path of the config absolute, relative to `dir`, and `out` relative to `outDir`. */
function absolutePaths(config: Config, dir: string, outDir: string): void {
  const at = (path: string) => resolve(dir, path);
  config.out = resolve(outDir, config.out);
  if (config.base && !isUrl(config.base.image)) config.base.image = at(config.base.image);
  for (const source of config.apt.extra_sources) if (source.signed_by) source.signed_by = at(source.signed_by);
  config.layers = config.layers.map((ref) => (isLayerPath(ref) ? at(ref) : ref));
  if (config.bootloader.image) config.bootloader.image = at(config.bootloader.image);
  if (config.bootloader.recovery) config.bootloader.recovery = at(config.bootloader.recovery);
  if (config.cluster.secret_file) config.cluster.secret_file = at(config.cluster.secret_file);
  if (config.cluster.api_token_file) config.cluster.api_token_file = at(config.cluster.api_token_file);
  if (config.engine.dllama_dir) config.engine.dllama_dir = at(config.engine.dllama_dir);
  if (config.engine.source && !isUrl(config.engine.source)) config.engine.source = at(config.engine.source);
  if (config.model) {
    config.model.path = at(config.model.path);
    if (config.model.tokenizer) config.model.tokenizer = at(config.model.tokenizer);
  }
  config.user.ssh_keys = config.user.ssh_keys.map(at);
  config.ota.trusted_keys = config.ota.trusted_keys.map(at);
}

const REDACTED = '<redacted>';

/** The config as recorded in manifest.json: secrets out, credentials in URLs masked. */
export function redactConfig(config: Config, schema: JsonSchema = loadSchema('config')): unknown {
  const walk = (value: unknown, node: JsonSchema | undefined): unknown => {
    if (node?.['x-secret']) return REDACTED;
    if (typeof value === 'string') return value.replace(/^([a-z]+:\/\/)[^/@\s]+@/i, `$1${REDACTED}@`);
    if (Array.isArray(value)) return value.map((v) => walk(v, node?.items));
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, node?.properties?.[k])]));
    }
    return value;
  };
  return walk(config, schema);
}
