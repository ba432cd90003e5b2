import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { listBoards, loadBoard } from '../catalog/boards.js';
import { listTuningProfiles } from '../catalog/tuning-profiles.js';
import type { InitContext } from './questions.js';
import { parsePublicKeyFile } from '../../shared/ssh-key.js';

/** The boards and tuning profiles of the catalog and the public keys in ~/.ssh. */
export async function loadInitContext(opts: { cwd: string; home: string }): Promise<InitContext> {
  const boards = await Promise.all(
    (await listBoards()).map(async (name) => {
      const b = await loadBoard(name);
      return { name, description: b.description, engine: b.engine, tuning: b.tuning };
    }),
  );
  // The Pis first, as a person expects them.
  const order = (n: string) => (n === 'qemu' ? 1 : 0);
  boards.sort((x, y) => order(x.name) - order(y.name) || y.name.localeCompare(x.name));
  const sshDir = join(opts.home, '.ssh');
  const names = (await readdir(sshDir).catch(() => [] as string[])).filter((n) => n.endsWith('.pub')).sort();
  const foundKeys = await Promise.all(
    names.map(async (n) => {
      const path = join(sshDir, n);
      const text = await readFile(path, 'utf8').catch(() => '');
      const keys = parsePublicKeyFile(text);
      if ('problem' in keys) return { path, label: `~/.ssh/${n}`, problem: `not a public key: it ${keys.problem}` };
      return { path, label: `~/.ssh/${n} (${keys.map((k) => `${k.type}${k.comment ? ` ${k.comment}` : ''}`).join('; ')})` };
    }),
  );
  return { cwd: opts.cwd, home: opts.home, boards, tuningProfiles: await listTuningProfiles(), foundKeys };
}
