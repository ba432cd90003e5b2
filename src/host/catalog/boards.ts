import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ProfileError } from '../errors.js';
import { IMAGE_DIR } from '../paths.js';
import { readCatalogFile } from './catalog-file.js';
import { didYouMean } from '../config/did-you-mean.js';

/** A board profile: image/boards/<name>.yaml (schema: image/schema/board.schema.json). */
export interface BoardProfile {
  name: string;
  description: string;
  arch: 'arm64';
  /** GCC's -mcpu= for engines compiled from source. */
  cpu: string;
  suite: string;
  variant: string;
  components: string[];
  packages: string[];
  initramfs_modules?: string[];
  /** Built-in layers (image/layers/<name>/), in order. */
  layers: string[];
  tuning: string;
  engine: 'llama.cpp' | 'dllama';
  debian_kernel_caveat?: string;
  memory: { ram_mib: number; reserved_mib: number };
  boot: {
    partition_mib: number;
    offset_mib: number;
    copy: { from: string; to: string; many: boolean }[];
    cmdline: string[];
    config_txt?: Record<string, string[]>;
    kernel_config_txt?: Record<string, string[]>;
  };
}

const BOARDS_DIR = join(IMAGE_DIR, 'boards');

export async function listBoards(): Promise<string[]> {
  const names = await readdir(BOARDS_DIR);
  return names.filter((n) => n.endsWith('.yaml')).map((n) => n.slice(0, -5)).sort();
}

export async function loadBoard(name: string): Promise<BoardProfile> {
  const boards = await listBoards();
  if (!boards.includes(name)) {
    throw new ProfileError(`unknown board "${name}"${didYouMean(name, boards)}; available boards: ${boards.join(', ')}`, 'pick one with --board or `board:` in pi-image.yaml');
  }
  return (await readCatalogFile('board', join(BOARDS_DIR, `${name}.yaml`), `board profile ${name}`)) as BoardProfile;
}
