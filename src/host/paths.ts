import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { homedir } from 'node:os';

/** The package root: src/host/ and dist/host/ both sit two levels below it. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const IMAGE_DIR = join(PACKAGE_ROOT, 'image');
export const OVERLAY_DIR = join(PACKAGE_ROOT, 'overlay');

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.PI_IMAGE_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'pi-image');
}
