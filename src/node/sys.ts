import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';

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

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The command is not installed. */
  missing: boolean;
}

export function run(command: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', SYSTEMD_PAGER: '' } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr, missing: (error as NodeJS.ErrnoException | null)?.code === 'ENOENT' });
    });
  });
}

/** "0-2,5" → [0, 1, 2, 5] */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

/** [3] → "8": the hex mask sysfs uses for rps_cpus. */
export function cpuMask(cpus: number[]): string {
  return cpus.reduce((mask, c) => mask | (1n << BigInt(c)), 0n).toString(16);
}

/** "00000000,00000008" → 8n */
export function parseMask(text: string): bigint {
  const hex = text.replace(/[,\s]/g, '');
  return hex ? BigInt(`0x${hex}`) : 0n;
}
