import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PiImageError } from '../errors.js';
import { blockDevno, deviceInfo, type SystemPaths, REAL_SYSTEM } from './safety.js';

/**
 * `flash --count N`: N cards from one image in a row, each with its own name. A file target
 * is a name pattern with `{n}`; a block device is one card reader, whose next card is waited for.
 */
export interface CardPlan {
  index: number;
  target: string;
  name?: string;
}

export const COUNT_PLACEHOLDER = '{n}';

/** The cluster name the image was built for, from the manifest.json the build writes beside it. */
export function clusterNameBeside(image: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(dirname(image), 'manifest.json'), 'utf8')) as { config?: { cluster?: { name?: unknown } } };
    const name = manifest.config?.cluster?.name;
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Which target and name each card gets. `node` is the name (one card) or the names' prefix
 * (several); `first` is the first card's number in the cluster (`--index`), which names it
 * `<cluster>-<n>` when it is given and no `--node` is.
 */
export function planCards(opts: { target: string; count: number; node?: string; clusterName?: string; first?: number }): CardPlan[] {
  const { target, count } = opts;
  const first = opts.first ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new PiImageError(`--count must be a whole number from 1 to 64, not ${count}`);
  if (!Number.isInteger(first) || first < 1 || first > 64) throw new PiImageError(`--index must be a whole number from 1 to 64, not ${opts.first}`);
  const isDevice = blockDevno(target) !== undefined;
  if (count === 1) {
    if (target.includes(COUNT_PLACEHOLDER)) throw new PiImageError(`${target} has ${COUNT_PLACEHOLDER} in it, but only one card is flashed`, `add --count N, or give the file's own name`);
    if (opts.node) return [{ index: first, target, name: opts.node }];
    if (opts.first === undefined) return [{ index: 1, target }];
    if (!opts.clusterName) throw new PiImageError(`--index ${first}: no name for the card (no manifest.json beside the image, no pi-image.yaml naming the cluster)`, 'give its name with --node NAME');
    return [{ index: first, target, name: `${opts.clusterName}-${first}` }];
  }
  if (!isDevice && !target.includes(COUNT_PLACEHOLDER)) {
    throw new PiImageError(`--count ${count} needs a block device (one card after another) or file names with ${COUNT_PLACEHOLDER} in them, not ${target}`, `for example: pi-image flash image.img.zst 'cards/node-${COUNT_PLACEHOLDER}.img' --count ${count}`);
  }
  const prefix = opts.node ?? opts.clusterName;
  if (!prefix) throw new PiImageError(`--count ${count}: no names for the cards (the image has no manifest.json beside it naming its cluster)`, 'give a prefix with --node NAME: the cards become NAME-1 … NAME-N');
  return Array.from({ length: count }, (_, i) => ({ index: first + i, target: isDevice ? target : target.split(COUNT_PLACEHOLDER).join(String(first + i)), name: `${prefix}-${first + i}` }));
}

const ipToInt = (ip: string) => ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);

/** The address of card `index` (1-based) when the first card gets `first`: the next addresses in its subnet. */
export function nthAddress(first: string, index: number): string {
  const [ip, prefix] = first.split('/') as [string, string];
  const size = 2 ** (32 - Number(prefix));
  const base = ipToInt(ip);
  const n = base + index - 1;
  // The last address of a subnet is its broadcast address (but for /31 and /32).
  if (n > base - (base % size) + size - (size > 2 ? 2 : 1)) {
    throw new PiImageError(`--address ${first}: card ${index} would need an address beyond its /${prefix} subnet`, 'start lower in the subnet, or use a larger one');
  }
  return `${[24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.')}/${prefix}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A card reader's medium: present when the device has a size (a reader without a card, or a detached loop device, has 0). */
function hasMedium(device: string, sys: SystemPaths): boolean {
  try {
    return deviceInfo(device, sys).size > 0;
  } catch {
    return false;
  }
}

/** Waits until the card in `device` is taken out and another one put in. */
export async function waitForNextCard(device: string, opts: { signal?: AbortSignal; say: (line: string) => void; pollMs?: number; sys?: SystemPaths }): Promise<void> {
  const sys = opts.sys ?? REAL_SYSTEM;
  const poll = opts.pollMs ?? 500;
  opts.say(`take the card out of ${device}, then put the next one in (Ctrl-C stops)`);
  while (hasMedium(device, sys)) {
    opts.signal?.throwIfAborted();
    await sleep(poll);
  }
  opts.say('card taken out; waiting for the next one');
  while (!hasMedium(device, sys)) {
    opts.signal?.throwIfAborted();
    await sleep(poll);
  }
  // A card reader announces the medium before its partitions settle.
  await sleep(poll);
}
