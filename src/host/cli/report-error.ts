import { PiImageError, StageError } from '../errors.js';
import type { Reporter } from '../progress.js';

/** What a file system error means to the person who gave the path, and what to do. */
const SYSTEM_ERRORS: Record<string, [string, string]> = {
  ENOENT: ['no such file or folder', 'check the path (a file is written only into a folder that exists)'],
  ENOTDIR: ['a part of the path is not a folder', 'check the path'],
  EISDIR: ['it is a folder', 'give the path of a file'],
  EACCES: ['permission denied', 'choose a place you may write to, or run as a user who may'],
  EPERM: ['operation not permitted', 'run as a user who may (root for devices, loop mounts and namespaces)'],
  EROFS: ['the file system is read-only', 'choose another place'],
  ENOSPC: ['no space left on the device', 'free some space or choose another place'],
  EEXIST: ['it exists already', 'remove it or choose another name'],
};

/** A file system error on a path the user gave: a mistake to explain, not a bug to report. */
function explainSystemError(e: Error): PiImageError | undefined {
  const { code, path } = e as NodeJS.ErrnoException;
  const meaning = code ? SYSTEM_ERRORS[code] : undefined;
  if (!meaning || !path) return undefined;
  // writeFileAtomic writes to <file>.tmp-<pid> first: name the file the user asked for.
  return new PiImageError(`${path.replace(/\.tmp-\d+$/, '')}: ${meaning[0]} (${code})`, meaning[1]);
}

/** Prints any error the same way: what failed, the command and its last output, and what to do. */
export function reportError(error: unknown, reporter: Reporter, out: NodeJS.WritableStream = process.stderr): void {
  const raw = error instanceof Error ? error : new Error(String(error));
  const e = raw instanceof PiImageError ? raw : (explainSystemError(raw) ?? raw);
  const hint = e instanceof PiImageError ? e.hint : undefined;
  const stageError = e instanceof StageError ? e : undefined;
  reporter.emit({ type: 'error', stage: stageError?.stage, message: e.message, hint, command: stageError?.command, outputTail: stageError?.outputTail });
  const lines = [`error: ${e.message}`];
  if (stageError?.command) lines.push(`  command: ${stageError.command}`);
  if (stageError?.outputTail.length) lines.push('  last output:', ...stageError.outputTail.map((l) => `    | ${l}`));
  if (hint) lines.push(...hint.split('\n').map((l, i) => `  ${i === 0 ? 'hint: ' : '      '}${l}`));
  if (!(e instanceof PiImageError)) lines.push('  (this is a bug in pi-image; please report it with the output above)', ...(e.stack ? [e.stack] : []));
  out.write(`${lines.join('\n')}\n`);
}
