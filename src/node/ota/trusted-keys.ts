import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { publicKeyFromPem } from '../../shared/ota/manifest.js';

/** The update keys this image trusts (ota.trusted_keys, one PEM file each); an unreadable one is skipped and logged. */
export async function trustedKeys(dir: string, log: (line: string) => void): Promise<KeyObject[]> {
  const keys: KeyObject[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.pub')).sort()) {
    try {
      keys.push(publicKeyFromPem(await readFile(join(dir, name), 'utf8'), join(dir, name)));
    } catch (e) {
      log(`ota: ${(e as Error).message}`);
    }
  }
  return keys;
}

/** Debian's name of this machine's architecture, as bundles name theirs. */
export const debianArch = (nodeArch: string = process.arch): string => ({ arm64: 'arm64', x64: 'amd64', arm: 'armhf' } as Record<string, string>)[nodeArch] ?? nodeArch;
