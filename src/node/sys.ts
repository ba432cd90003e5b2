import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import type { CommandResult } from '../shared/tuning/system.js';

/** A file's text without surrounding white space, or undefined when it cannot be read. */
export async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

export async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

export async function writeText(path: string, value: string): Promise<string | undefined> {
  try {
    await writeFile(path, value);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
}

export interface RunOptions {
  /** Written to the command's standard input, which is then closed (e.g. rules for `nft -f -`). */
  input?: string;
}

/** Runs a command to its end; never rejects: a failure is in the result's code (and `missing`). */
export function run(command: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', SYSTEMD_PAGER: '' } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr, missing: (error as NodeJS.ErrnoException | null)?.code === 'ENOENT' });
    });
    if (opts.input !== undefined) {
      // A command that exits (or is missing) before reading it all breaks the pipe: its result says why.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input);
    }
  });
}
