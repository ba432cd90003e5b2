import { readFile, readdir, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join, relative, resolve, sep } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ProfileError } from '../errors.js';
import { validateAgainst } from '../config/validate.js';
import { IMAGE_DIR, OVERLAY_DIR, PACKAGE_ROOT } from '../paths.js';

export interface BoardProfile {
  name: string;
  description: string;
  arch: 'arm64';
  suite: string;
  variant: string;
  components: string[];
  packages: string[];
  initramfs_modules?: string[];
  layers: string[];
  tuning: string;
  engine: 'llama.cpp' | 'dllama';
  boot: {
    partition_mib: number;
    offset_mib: number;
    copy: { from: string; to: string; many: boolean }[];
    cmdline: string[];
    config_txt?: Record<string, string[]>;
    kernel_config_txt?: Record<string, string[]>;
  };
}

export interface LayerDefinition {
  name: string;
  description: string;
  requires: string[];
  packages: string[];
  base_enable: string[];
  files: Record<string, { mode?: string; uid?: number; gid?: number }>;
  remove: string[];
  enable: { unit: string; wanted_by: string }[];
  mask: string[];
  config_txt: Record<string, string[]>;
  cmdline: string[];
  build_files: Record<string, { from: string; mode?: string }>;
}

export interface OverlayFile {
  /** Path inside the rootfs, without a leading slash, after dropping a `.hbs` suffix. */
  path: string;
  source: string;
  template: boolean;
  sha256: string;
}

export interface Layer extends LayerDefinition {
  /** Where the layer was loaded from (a built-in name or a directory). */
  origin: string;
  overlay: OverlayFile[];
}

async function readYaml(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new ProfileError(`${what}: cannot read ${path}`);
  }
  try {
    return parseYaml(text);
  } catch (e) {
    throw new ProfileError(`${what}: ${path} is not valid YAML: ${(e as Error).message}`);
  }
}

export async function listBoards(): Promise<string[]> {
  const names = await readdir(join(IMAGE_DIR, 'boards'));
  return names.filter((n) => n.endsWith('.yaml')).map((n) => n.slice(0, -5)).sort();
}

export async function loadBoard(name: string): Promise<BoardProfile> {
  const boards = await listBoards();
  if (!boards.includes(name)) {
    throw new ProfileError(`unknown board "${name}"; available boards: ${boards.join(', ')}`, 'pick one with --board or `board:` in pi-image.yaml');
  }
  const data = await readYaml(join(IMAGE_DIR, 'boards', `${name}.yaml`), `board ${name}`);
  const problems = validateAgainst('board', data);
  if (problems.length) throw new ProfileError(`board profile ${name} is invalid:\n  - ${problems.join('\n  - ')}`);
  return data as BoardProfile;
}

async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walkFiles(full)));
    else if (e.isFile()) out.push(full);
    else throw new ProfileError(`overlay ${full}: only regular files and folders are supported`);
  }
  return out;
}

/**
 * A layer by name (built-in: image/layers/<name>.yaml with files in overlay/<name>/)
 * or by directory (a user layer: <dir>/layer.yaml with files in <dir>/overlay/).
 */
export async function loadLayer(ref: string, baseDir = process.cwd()): Promise<Layer> {
  const isDir = ref.includes('/') || ref.startsWith('.');
  const definitionPath = isDir ? join(resolve(baseDir, ref), 'layer.yaml') : join(IMAGE_DIR, 'layers', `${ref}.yaml`);
  const overlayDir = isDir ? join(resolve(baseDir, ref), 'overlay') : join(OVERLAY_DIR, ref);
  if (isDir) {
    const st = await stat(resolve(baseDir, ref)).catch(() => undefined);
    if (!st?.isDirectory()) throw new ProfileError(`layer directory ${ref} does not exist`, 'a layer is a folder with layer.yaml and overlay/');
  }
  const data = await readYaml(definitionPath, `layer ${ref}`);
  const problems = validateAgainst('layer', data);
  if (problems.length) throw new ProfileError(`layer ${ref} (${definitionPath}) is invalid:\n  - ${problems.join('\n  - ')}`);
  const def = data as LayerDefinition;
  const overlay: OverlayFile[] = [];
  for (const source of await walkFiles(overlayDir)) {
    const rel = relative(overlayDir, source).split(sep).join('/');
    const template = rel.endsWith('.hbs');
    const content = await readFile(source);
    const path = template ? rel.slice(0, -4) : rel;
    if (overlay.some((f) => f.path === path)) throw new ProfileError(`layer ${def.name}: overlay has both ${path} and ${path}.hbs`);
    overlay.push({
      path,
      source,
      template,
      sha256: createHash('sha256').update(content).digest('hex'),
    });
  }
  for (const [path, { from, mode }] of Object.entries(def.build_files)) {
    const source = join(PACKAGE_ROOT, from);
    const content = await readFile(source).catch(() => {
      throw new ProfileError(`layer ${def.name}: ${from} (for /${path}) is missing`, 'run `npm run build` first');
    });
    if (overlay.some((f) => f.path === path)) throw new ProfileError(`layer ${def.name}: ${path} is both in build_files and in the overlay`);
    overlay.push({ path, source, template: false, sha256: createHash('sha256').update(content).digest('hex') });
    if (mode) def.files[path] = { ...def.files[path], mode };
  }
  for (const path of Object.keys(def.files)) {
    const known = overlay.some((f) => f.path === path || f.path.startsWith(`${path}/`));
    if (!known) throw new ProfileError(`layer ${def.name}: files: "${path}" is not in its overlay`);
  }
  for (const { unit } of def.enable) {
    if (!overlay.some((f) => f.path.endsWith(`/systemd/system/${unit}`))) {
      throw new ProfileError(`layer ${def.name}: enable: unit "${unit}" is not in its overlay (etc/systemd/system/ or usr/lib/systemd/system/)`);
    }
  }
  return { ...def, origin: isDir ? resolve(baseDir, ref) : ref, overlay };
}

/** Orders layers so every layer comes after those it requires; otherwise keeps the given order. */
export function orderLayers(layers: Layer[]): Layer[] {
  const byName = new Map(layers.map((l) => [l.name, l]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const ordered: Layer[] = [];
  const visit = (layer: Layer, chain: string[]) => {
    if (done.has(layer.name)) return;
    if (visiting.has(layer.name)) throw new ProfileError(`layers require each other in a cycle: ${[...chain, layer.name].join(' → ')}`);
    visiting.add(layer.name);
    for (const req of layer.requires) {
      const dep = byName.get(req);
      if (!dep) throw new ProfileError(`layer ${layer.name} requires layer "${req}", which is not in this build`, `add "${req}" to the board's layers or to layers: in pi-image.yaml`);
      visit(dep, [...chain, layer.name]);
    }
    visiting.delete(layer.name);
    done.add(layer.name);
    ordered.push(layer);
  };
  for (const layer of layers) visit(layer, []);
  return ordered;
}
