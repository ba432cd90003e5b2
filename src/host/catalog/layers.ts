import { readdir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ProfileError } from '../errors.js';
import { LAYERS_DIR, PACKAGE_ROOT } from '../paths.js';
import { sha256OfFile } from '../../shared/file-hash.js';
import { readCatalogFile } from './catalog-file.js';
import { didYouMean } from '../config/did-you-mean.js';

/** layer.yaml (schema: image/schema/layer.schema.json). */
export interface LayerDefinition {
  name: string;
  description: string;
  requires: string[];
  packages: string[];
  /** Debian suites that have `packages`; absent: any suite. */
  suites?: string[];
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
  /** Where the layer was loaded from: a built-in layer's name, or a user layer's folder. */
  origin: string;
  overlay: OverlayFile[];
}

/** A layer is a folder: its definition, and beside it the files it puts into the rootfs. */
const DEFINITION = 'layer.yaml';
const OVERLAY = 'overlay';

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

const isFile = (path: string) => stat(path).then((s) => s.isFile(), () => false);

const isInside = (root: string, path: string) => {
  const rel = relative(root, path);
  return rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
};

/**
 * Where a build file comes from: `from` resolved against `root` and kept inside it, by its
 * name and by its real path (a symlink out of the folder would pull any file of the build
 * machine into the image).
 */
async function buildFileSource(layer: string, path: string, from: string, root: { dir: string; name: string; hint: string }): Promise<string> {
  const key = `layer ${layer}: build_files "${path}": from "${from}"`;
  const allowed = `a path inside ${root.dir}, relative to it`;
  const source = resolve(root.dir, from);
  if (isAbsolute(from) || !isInside(root.dir, source)) throw new ProfileError(`${key} is outside ${root.name}`, `give ${allowed}`);
  const real = await realpath(source).catch(() => undefined);
  if (!real || !(await isFile(real))) throw new ProfileError(`${key} is missing or not a file`, root.hint);
  if (!isInside(await realpath(root.dir), real)) throw new ProfileError(`${key} leads through a symlink to ${real}, outside ${root.name}`, `give ${allowed}, not a link out of it`);
  return real;
}

/** The built-in layers: the folders of image/layers/ that hold a layer.yaml. */
export async function listBuiltInLayers(): Promise<string[]> {
  const entries = await readdir(LAYERS_DIR, { withFileTypes: true });
  const names: string[] = [];
  for (const e of entries) if (e.isDirectory() && (await isFile(join(LAYERS_DIR, e.name, DEFINITION)))) names.push(e.name);
  return names.sort();
}

/** A built-in layer by name: image/layers/<name>/. */
export async function loadBuiltInLayer(name: string): Promise<Layer> {
  const dir = join(LAYERS_DIR, name);
  if (!(await isFile(join(dir, DEFINITION)))) {
    const builtIn = await listBuiltInLayers();
    throw new ProfileError(
      `unknown layer "${name}"${didYouMean(name, builtIn)}; built-in layers: ${builtIn.join(', ')}`,
      `a layer of your own is a folder with ${DEFINITION} and ${OVERLAY}/: give its path`,
    );
  }
  // A built-in layer's build files are the package's own build output (dist/).
  return loadLayer(dir, name, { dir: PACKAGE_ROOT, name: 'the pi-image package', hint: 'run `npm run build` first' });
}

/**
 * A layer folder, built-in or a user's: `layer.yaml` beside `overlay/` (the files it puts
 * into the rootfs, by their path there; `.hbs` files are templates). Its `build_files` come
 * from inside `buildFilesRoot`: the layer folder itself unless it is a built-in layer.
 */
export async function loadLayer(
  dir: string,
  origin = dir,
  buildFilesRoot = { dir, name: 'the layer folder', hint: `put the file into the layer folder ${dir}` },
): Promise<Layer> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new ProfileError(`layer directory ${dir} does not exist`, `a layer is a folder with ${DEFINITION} and ${OVERLAY}/`);
  const def = (await readCatalogFile('layer', join(dir, DEFINITION), `layer ${origin}`)) as LayerDefinition;
  const overlayDir = join(dir, OVERLAY);
  // Its files are checked to be plain files (walkFiles); the folder itself must not be a link out either.
  const overlayReal = await realpath(overlayDir).catch(() => undefined);
  if (overlayReal && !isInside(await realpath(dir), overlayReal)) {
    throw new ProfileError(`layer ${def.name}: ${OVERLAY}/ leads through a symlink to ${overlayReal}, outside the layer folder ${dir}`, `make ${OVERLAY}/ a real folder inside the layer folder`);
  }
  const overlay: OverlayFile[] = [];
  for (const source of await walkFiles(overlayDir)) {
    const rel = relative(overlayDir, source).split(sep).join('/');
    const template = rel.endsWith('.hbs');
    const path = template ? rel.slice(0, -4) : rel;
    if (overlay.some((f) => f.path === path)) throw new ProfileError(`layer ${def.name}: overlay has both ${path} and ${path}.hbs`);
    overlay.push({ path, source, template, sha256: await sha256OfFile(source) });
  }
  for (const [path, { from, mode }] of Object.entries(def.build_files)) {
    const source = await buildFileSource(def.name, path, from, buildFilesRoot);
    const sha256 = await sha256OfFile(source);
    if (overlay.some((f) => f.path === path)) throw new ProfileError(`layer ${def.name}: ${path} is both in build_files and in the overlay`);
    overlay.push({ path, source, template: false, sha256 });
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
  return { ...def, origin, overlay };
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
