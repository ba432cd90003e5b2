import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { homedir } from 'node:os';

/** The package root: src/host/ and dist/host/ both sit two levels below it. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const IMAGE_DIR = join(PACKAGE_ROOT, 'image');
/** Built-in layers: image/layers/<name>/layer.yaml beside image/layers/<name>/overlay/. */
export const LAYERS_DIR = join(IMAGE_DIR, 'layers');

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.PI_IMAGE_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'pi-image');
}
