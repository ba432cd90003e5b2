import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../shared/atomic-write.js';
import type { CardIdentity } from '../shared/card-identity.js';
import { AUTHORIZED_KEYS_PATH, BOOT_DIR, CARD_FILES, CARD_NETWORK_PATH, CARD_SETTINGS_PATH } from '../shared/node-paths.js';
import { readCardFiles, staticNetworkUnit } from './card-files.js';
import { syncDir, wipeAndDelete } from './wipe.js';

type Log = (line: string) => void;

export interface CardPaths {
  bootDir: string;
  authorizedKeys: string;
  cardSettings: string;
  networkUnit: string;
}

const NODE_PATHS: CardPaths = { bootDir: BOOT_DIR, authorizedKeys: AUTHORIZED_KEYS_PATH, cardSettings: CARD_SETTINGS_PATH, networkUnit: CARD_NETWORK_PATH };

/**
 * Takes this card's identity off its boot partition, at any boot it is there (a card flashed
 * with `pi-image flash --node`, or customised in Raspberry Pi Imager): the static address
 * and the role are written where networkd and the agent read them, the SSH keys join the
 * image's, and every file is then wiped off the FAT. Applying comes first and is idempotent,
 * so a power cut in between only means it is applied again at the next boot.
 * Returns the identity, or undefined when the card had none.
 */
export async function takeCardIdentity(log: Log, paths: CardPaths = NODE_PATHS): Promise<CardIdentity | undefined> {
  // Each file read once; one that is not there (or not a file) reads as undefined.
  const texts = Object.fromEntries(
    await Promise.all(Object.entries(CARD_FILES).map(async ([what, name]) => [what, await readFile(join(paths.bootDir, name), 'utf8').catch(() => undefined)] as const)),
  ) as Record<keyof typeof CARD_FILES, string | undefined>;
  const present = (Object.keys(CARD_FILES) as (keyof typeof CARD_FILES)[]).filter((what) => texts[what] !== undefined).map((what) => CARD_FILES[what]);
  if (!present.length) return undefined;
  const { identity, notes, problems } = readCardFiles({ userData: texts.userData, networkConfig: texts.networkConfig, node: texts.node });
  for (const problem of problems) log(`error: ${problem}`);
  for (const note of notes) log(note);

  if (identity.network) {
    await mkdir(dirname(paths.networkUnit), { recursive: true });
    await writeFileAtomic(paths.networkUnit, staticNetworkUnit(identity.network), 0o644);
    log(`static address ${identity.network.address} on ${identity.network.link}${identity.network.gateway ? ` via ${identity.network.gateway}` : ''} (from the card's network-config)`);
  }
  if (identity.role) {
    await mkdir(dirname(paths.cardSettings), { recursive: true });
    await writeFileAtomic(paths.cardSettings, `${JSON.stringify({ role: identity.role })}\n`);
    log(`role ${identity.role} (from the card's node file)`);
  }
  if (identity.sshKeys.length) {
    const have = (await readFile(paths.authorizedKeys, 'utf8').catch(() => '')).split('\n').map((l) => l.trim()).filter(Boolean);
    const added = identity.sshKeys.filter((k) => !have.includes(k));
    await mkdir(dirname(paths.authorizedKeys), { recursive: true });
    await writeFileAtomic(paths.authorizedKeys, [...have, ...added].map((l) => `${l}\n`).join(''), 0o644);
    log(`${added.length} SSH key(s) added from the card's user-data`);
  }
  // The files may hold password hashes or Wi-Fi keys: none stays on the FAT, applied or not.
  for (const name of present) await wipeAndDelete(join(paths.bootDir, name), dirname(join(paths.bootDir, name)));
  await syncDir(paths.bootDir);
  log(`took ${present.join(', ')} off the boot partition`);
  return identity;
}
