import { access, constants, readFile, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { ENGINES } from '../../shared/engines/index.js';
import type { EngineName } from '../../shared/engines/adapter.js';
import { parsePublicKeyFile } from '../../shared/ssh-key.js';
import { isCidr } from '../../shared/card-identity.js';
import { isIPv4 } from '../../shared/ipv4.js';
import { didYouMean } from '../config/did-you-mean.js';

export type Storage = 'sd' | 'nvme' | 'usb';
export type BaseKind = 'debian' | 'raspios';

/** Everything `pi-image init` asks; paths are absolute. */
export interface InitAnswers {
  board: string;
  storage?: Storage;
  base: BaseKind;
  baseImage?: string;
  baseSha256?: string;
  engine: EngineName;
  dllamaDir?: string;
  model: string;
  tokenizer?: string;
  cluster: string;
  clusterSize: number;
  network: 'dhcp' | 'static';
  firstAddress?: string;
  gateway?: string;
  dns?: string[];
  sshKeys: string[];
  apiToken: boolean;
  tuningProfile: string;
}

/** What the questions need to know about this machine and the catalog (loaded once by the caller). */
export interface InitContext {
  /** Where relative paths given on the command line or typed in are taken from. */
  cwd: string;
  home: string;
  boards: { name: string; description: string; engine: EngineName; tuning: string }[];
  tuningProfiles: string[];
  /** ~/.ssh/*.pub, each with its parse problem if it has one. */
  foundKeys: { path: string; label: string; problem?: string }[];
}

export type Parsed = { value: unknown } | { problem: string };
export type Choice = { name: string; value: unknown; description?: string; disabled?: string | boolean; checked?: boolean };
type Partial_ = Partial<InitAnswers>;

export interface Question {
  id: keyof InitAnswers;
  /** The flag that answers it, as commander spells it. */
  flag: string;
  /** One line for the list of missing answers. */
  summary: string;
  kind: 'text' | 'select' | 'confirm' | 'keys';
  message: (a: Partial_, ctx: InitContext) => string;
  choices?: (a: Partial_, ctx: InitContext) => Choice[];
  applies?: (a: Partial_, ctx: InitContext) => boolean;
  /** False: not worth asking a person (the default is taken), though its flag still answers it. */
  ask?: (a: Partial_, ctx: InitContext) => boolean;
  default?: (a: Partial_, ctx: InitContext) => unknown;
  /** A flag's value or a typed answer → the answer, or what is wrong with it. */
  parse: (raw: unknown, a: Partial_, ctx: InitContext) => Promise<Parsed>;
}

const ok = (value: unknown): Parsed => ({ value });
const bad = (problem: string): Parsed => ({ problem });

/** `~/x` and relative paths made absolute (a shell expands `~` in flags; typed answers need it here). */
export function absolutePath(raw: string, ctx: Pick<InitContext, 'cwd' | 'home'>): string {
  const text = raw.trim();
  if (text === '~' || text.startsWith('~/')) return join(ctx.home, text.slice(1));
  return resolve(ctx.cwd, text);
}

const isUrl = (s: string) => /^https?:\/\/\S+$/.test(s);

async function fileProblem(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return `${path} does not exist`;
  if (!st.isFile()) return `${path} is not a file`;
  return undefined;
}

function text(raw: unknown): string | undefined {
  return typeof raw === 'string' && raw.trim() ? raw.trim() : undefined;
}

// ---- the checks, each usable on its own -------------------------------------------------

export function checkClusterName(raw: string): string | undefined {
  if (/^[a-z][a-z0-9-]{0,23}$/.test(raw)) return undefined;
  return `cluster name "${raw}" must start with a lower-case letter and hold only a-z, 0-9 and -, at most 24 characters`;
}

export function checkClusterSize(raw: string, engine: EngineName): string | undefined {
  if (!/^\d+$/.test(raw.trim())) return `cluster size must be a whole number from 1 to 8, not "${raw}"`;
  const n = Number(raw);
  if (n < 1 || n > 8) return `cluster size must be from 1 to 8 nodes (root included), not ${n}`;
  const problems = ENGINES[engine].checkCluster(n, {});
  return problems.length ? problems.join('; ') : undefined;
}

export function checkSha256(raw: string): string | undefined {
  const s = raw.trim().toLowerCase();
  if (/^[0-9a-f]{64}$/.test(s)) return undefined;
  return `a SHA-256 is 64 hex digits (0-9, a-f); "${raw.trim().slice(0, 80)}" has ${s.length} characters${/[^0-9a-f]/.test(s) ? ' and others than hex digits' : ''}`;
}

export async function checkModel(path: string, engine: EngineName): Promise<string | undefined> {
  const problem = await fileProblem(path);
  if (problem) return `model file ${problem}`;
  const want = engine === 'llama.cpp' ? '.gguf' : '.m';
  if (extname(path) !== want) return `${engine} loads ${want} model files, not ${extname(path) || 'a file without extension'} (${path})`;
  return undefined;
}

export async function checkTokenizer(path: string): Promise<string | undefined> {
  const problem = await fileProblem(path);
  if (problem) return `tokenizer file ${problem}`;
  if (extname(path) !== '.t') return `dllama's tokenizer is a .t file, not ${path}`;
  return undefined;
}

export async function checkDllamaDir(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isDirectory()) return `dllama folder ${path} ${st ? 'is not a folder' : 'does not exist'}`;
  for (const binary of ['dllama', 'dllama-api']) {
    const ok = await access(join(path, binary), constants.X_OK).then(() => true, () => false);
    if (!ok) return `${join(path, binary)} is missing or not executable; the folder must hold prebuilt arm64 dllama and dllama-api binaries`;
  }
  return undefined;
}

export async function checkSshKeyFile(path: string): Promise<string | undefined> {
  const data = await readFile(path, 'utf8').catch(() => undefined);
  if (data === undefined) return `cannot read SSH key file ${path}`;
  const keys = parsePublicKeyFile(data);
  return 'problem' in keys ? `SSH key file ${path} ${keys.problem}` : undefined;
}

export async function checkBaseImage(raw: string, ctx: Pick<InitContext, 'cwd' | 'home'>): Promise<string | undefined> {
  if (isUrl(raw)) return undefined;
  if (/^[a-z]+:\/\//i.test(raw)) return `base image: only http(s) URLs can be downloaded, not ${raw}`;
  const problem = await fileProblem(absolutePath(raw, ctx));
  return problem ? `base image ${problem} (give the .img / .img.xz file or its https:// URL)` : undefined;
}

// ---- the questions, in the order they are asked ---------------------------------------

const boardOf = (a: Partial_, ctx: InitContext) => ctx.boards.find((b) => b.name === a.board);
const isPi = (a: Partial_) => a.board !== 'qemu';
const isDllama = (a: Partial_) => a.engine === 'dllama';
const isStatic = (a: Partial_) => a.network === 'static';

export const QUESTIONS: Question[] = [
  {
    id: 'board',
    flag: '--board <name>',
    summary: 'board profile (pi5, pi4, qemu)',
    kind: 'select',
    message: () => 'Which board do the nodes run on?',
    choices: (_a, ctx) => ctx.boards.map((b) => ({ name: b.name, value: b.name, description: b.description })),
    default: (_a, ctx) => (ctx.boards.some((b) => b.name === 'pi5') ? 'pi5' : ctx.boards[0]?.name),
    parse: async (raw, _a, ctx) => {
      const name = text(raw) ?? '';
      return ctx.boards.some((b) => b.name === name) ? ok(name) : bad(`unknown board "${name}"${didYouMean(name, ctx.boards.map((b) => b.name))}; available: ${ctx.boards.map((b) => b.name).join(', ')}`);
    },
  },
  {
    id: 'storage',
    flag: '--storage <kind>',
    summary: 'what the board boots from: sd, nvme or usb',
    kind: 'select',
    ask: isPi,
    message: () => 'What do the boards boot from?',
    choices: () => [
      { name: 'SD card', value: 'sd' },
      { name: 'NVMe SSD (Pi 5: PCIe enabled, NVMe first in the boot order)', value: 'nvme' },
      { name: 'USB drive', value: 'usb' },
    ],
    default: () => 'sd',
    parse: async (raw) => (['sd', 'nvme', 'usb'].includes(String(raw)) ? ok(raw) : bad(`storage must be sd, nvme or usb, not "${String(raw)}"`)),
  },
  {
    id: 'base',
    flag: '--base <kind>',
    summary: 'base system: debian (Debian packages) or raspios (the official Raspberry Pi OS Lite image; give --base-image and --base-sha256)',
    kind: 'select',
    ask: isPi,
    message: (a) =>
      `Base system?${a.board === 'pi5' ? " For real Pi 5 boards take Raspberry Pi OS Lite: Debian's own kernel cannot drive the Pi 5's Ethernet (RP1)." : ''}`,
    choices: (a) => [
      { name: `The official Raspberry Pi OS Lite (64-bit) image${a.board === 'pi5' ? ' (recommended for a Pi 5)' : ''}`, value: 'raspios' },
      { name: `Debian packages (built with mmdebstrap)${a.board === 'pi5' ? ": no Ethernet on a Pi 5 with Debian's kernel" : ''}`, value: 'debian' },
    ],
    default: () => 'debian',
    parse: async (raw) => (raw === 'debian' || raw === 'raspios' ? ok(raw) : bad(`base must be debian or raspios, not "${String(raw)}"`)),
  },
  {
    id: 'baseImage',
    flag: '--base-image <path-or-url>',
    summary: 'the Raspberry Pi OS Lite arm64 .img / .img.xz: a file here or its https:// URL',
    kind: 'text',
    applies: (a) => a.base === 'raspios',
    message: () => 'Raspberry Pi OS Lite (64-bit) image: path or https:// URL of the .img.xz (from raspberrypi.com, "Operating system images")',
    parse: async (raw, _a, ctx) => {
      const s = text(raw);
      if (!s) return bad('give the path or URL of the image');
      const problem = await checkBaseImage(s, ctx);
      return problem ? bad(problem) : ok(isUrl(s) ? s : absolutePath(s, ctx));
    },
  },
  {
    id: 'baseSha256',
    flag: '--base-sha256 <hex>',
    summary: 'SHA-256 of that image file, as published next to it (64 hex digits)',
    kind: 'text',
    applies: (a) => a.base === 'raspios',
    message: () => 'SHA-256 of that file (shown next to the download)',
    parse: async (raw) => {
      const s = typeof raw === 'string' ? raw : '';
      const problem = checkSha256(s);
      return problem ? bad(problem) : ok(s.trim().toLowerCase());
    },
  },
  {
    id: 'engine',
    flag: '--engine <name>',
    summary: 'inference engine: llama.cpp or dllama',
    kind: 'select',
    message: () => 'Inference engine?',
    choices: (a, ctx) => {
      const dflt = boardOf(a, ctx)?.engine;
      const mark = (n: EngineName) => (n === dflt ? ' (the board\'s default)' : '');
      return [
        { name: `llama.cpp: Debian's packages (forky and later), any number of nodes${mark('llama.cpp')}`, value: 'llama.cpp' },
        { name: `dllama: distributed-llama, your prebuilt arm64 binaries, a power-of-two number of nodes${mark('dllama')}`, value: 'dllama' },
      ];
    },
    default: (a, ctx) => boardOf(a, ctx)?.engine,
    parse: async (raw) => (raw === 'llama.cpp' || raw === 'dllama' ? ok(raw) : bad(`engine must be llama.cpp or dllama, not "${String(raw)}"`)),
  },
  {
    id: 'dllamaDir',
    flag: '--dllama-dir <dir>',
    summary: 'folder with the prebuilt arm64 dllama and dllama-api binaries',
    kind: 'text',
    applies: isDllama,
    message: () => 'Folder with your prebuilt arm64 dllama and dllama-api binaries (copied into the image)',
    parse: async (raw, _a, ctx) => {
      const s = text(raw);
      if (!s) return bad('give the folder of the dllama binaries');
      const path = absolutePath(s, ctx);
      const problem = await checkDllamaDir(path);
      return problem ? bad(problem) : ok(path);
    },
  },
  {
    id: 'model',
    flag: '--model <file>',
    summary: 'model file on this machine (.gguf for llama.cpp, .m for dllama), baked into the image',
    kind: 'text',
    message: (a) => `Model file on this machine (${a.engine === 'dllama' ? '.m' : '.gguf'}), baked into the image`,
    parse: async (raw, a, ctx) => {
      const s = text(raw);
      if (!s) return bad('give the model file');
      const path = absolutePath(s, ctx);
      const problem = await checkModel(path, a.engine ?? 'llama.cpp');
      return problem ? bad(problem) : ok(path);
    },
  },
  {
    id: 'tokenizer',
    flag: '--tokenizer <file>',
    summary: "dllama's tokenizer file (.t) that belongs to the model",
    kind: 'text',
    applies: isDllama,
    message: () => "The model's tokenizer file (.t)",
    parse: async (raw, _a, ctx) => {
      const s = text(raw);
      if (!s) return bad('give the tokenizer file');
      const path = absolutePath(s, ctx);
      const problem = await checkTokenizer(path);
      return problem ? bad(problem) : ok(path);
    },
  },
  {
    id: 'cluster',
    flag: '--cluster <name>',
    summary: 'cluster name (nodes become <cluster>-<id>, the root answers as <cluster>.local)',
    kind: 'text',
    message: () => 'Cluster name (nodes are named <cluster>-<id>; the root answers as <cluster>.local)',
    default: () => 'pi-cluster',
    parse: async (raw) => {
      const s = typeof raw === 'string' ? raw.trim() : '';
      const problem = checkClusterName(s);
      return problem ? bad(problem) : ok(s);
    },
  },
  {
    id: 'clusterSize',
    flag: '--cluster-size <n>',
    summary: 'nodes in the cluster, root included (1-8; a power of two for dllama)',
    kind: 'text',
    message: (a) => `How many nodes, root included?${a.engine === 'dllama' ? ' (dllama: 1, 2, 4 or 8)' : ' (1-8)'}`,
    default: () => '2',
    parse: async (raw, a) => {
      const s = String(raw);
      const problem = checkClusterSize(s, a.engine ?? 'llama.cpp');
      return problem ? bad(problem) : ok(Number(s));
    },
  },
  {
    id: 'network',
    flag: '--network <kind>',
    summary: 'how the nodes get addresses: dhcp, or static (pi-image flash gives each card its own, from --first-address)',
    kind: 'select',
    ask: isPi,
    message: () => 'How do the nodes get their IPv4 addresses?',
    choices: () => [
      { name: "DHCP from the LAN's router (a link-local address on a bare switch)", value: 'dhcp' },
      { name: 'Static addresses: pi-image flash gives each card the next one', value: 'static' },
    ],
    default: () => 'dhcp',
    parse: async (raw) => (raw === 'dhcp' || raw === 'static' ? ok(raw) : bad(`network must be dhcp or static, not "${String(raw)}"`)),
  },
  {
    id: 'firstAddress',
    flag: '--first-address <cidr>',
    summary: "the first node's static IPv4 address with prefix length (node N gets the Nth from there)",
    kind: 'text',
    applies: isStatic,
    message: () => "The first node's address with its prefix length, e.g. 192.168.1.21/24 (node N gets the Nth address from there)",
    parse: async (raw) => {
      const s = text(raw) ?? '';
      return isCidr(s) ? ok(s) : bad(`"${s}" is not an IPv4 address with a prefix length, like 192.168.1.21/24`);
    },
  },
  {
    id: 'gateway',
    flag: '--gateway <ip>',
    summary: 'the default gateway for the static addresses (empty: none, a switch without a router)',
    kind: 'text',
    applies: isStatic,
    message: () => 'Default gateway (empty: none)',
    default: () => '',
    parse: async (raw) => {
      const s = typeof raw === 'string' ? raw.trim() : '';
      return !s ? ok(undefined) : isIPv4(s) ? ok(s) : bad(`gateway "${s}" is not an IPv4 address`);
    },
  },
  {
    id: 'dns',
    flag: '--dns <ips>',
    summary: 'DNS servers for the static addresses, comma-separated (empty: none)',
    kind: 'text',
    applies: isStatic,
    message: () => 'DNS servers, comma-separated (empty: none)',
    default: () => '',
    parse: async (raw) => {
      const list = (typeof raw === 'string' ? raw : '').split(',').map((d) => d.trim()).filter(Boolean);
      const badOne = list.find((d) => !isIPv4(d));
      return badOne === undefined ? ok(list) : bad(`DNS server "${badOne}" is not an IPv4 address`);
    },
  },
  {
    id: 'sshKeys',
    flag: '--ssh-key <file>',
    summary: 'public key file for SSH logins as the user pi (repeat for more; --no-ssh-key for none)',
    kind: 'keys',
    message: () => 'Public SSH keys that may log in as the user pi (SSH keys only: without one nobody can log in)',
    choices: (_a, ctx) => ctx.foundKeys.map((k) => ({ name: k.label, value: k.path, checked: !k.problem, disabled: k.problem ?? false })),
    default: (_a, ctx) => ctx.foundKeys.filter((k) => !k.problem).map((k) => k.path),
    parse: async (raw, _a, ctx) => {
      if (raw === false) return ok([]);
      const list = (Array.isArray(raw) ? raw : [raw]).map(String).filter((s) => s.trim());
      const paths = list.map((s) => absolutePath(s, ctx));
      for (const path of paths) {
        const problem = await checkSshKeyFile(path);
        if (problem) return bad(problem);
      }
      return ok([...new Set(paths)]);
    },
  },
  {
    id: 'apiToken',
    flag: '--api-token',
    summary: 'require a bearer token for the API (generated into api.token, 0600); --no-api-token: open to the LAN',
    kind: 'confirm',
    message: () => 'Require a bearer token for the cluster API? (generated into api.token next to the config, 0600; without it the API is open to the LAN)',
    default: () => true,
    parse: async (raw) => (typeof raw === 'boolean' ? ok(raw) : bad('--api-token takes no value')),
  },
  {
    id: 'tuningProfile',
    flag: '--tuning-profile <name>',
    summary: 'tuning profile from image/tuning/',
    kind: 'select',
    ask: (_a, ctx) => ctx.tuningProfiles.length > 1,
    message: () => 'Tuning profile?',
    choices: (a, ctx) => ctx.tuningProfiles.map((p) => ({ name: p === boardOf(a, ctx)?.tuning ? `${p} (the board's)` : p, value: p })),
    default: (a, ctx) => boardOf(a, ctx)?.tuning,
    parse: async (raw, _a, ctx) => {
      const s = text(raw) ?? '';
      return ctx.tuningProfiles.includes(s) ? ok(s) : bad(`unknown tuning profile "${s}"${didYouMean(s, ctx.tuningProfiles)}; available: ${ctx.tuningProfiles.join(', ')}`);
    },
  },
];

/** commander's attribute of a question's flag (`--cluster-size <n>` → clusterSize). */
export function flagKey(q: Question): string {
  const long = /--([a-z0-9-]+)/.exec(q.flag)?.[1] ?? '';
  return long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Just the flag's name (`--cluster-size`). */
export const flagName = (q: Question) => q.flag.split(' ')[0] as string;
