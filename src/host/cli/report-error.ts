import { PiImageError, StageError } from '../errors.js';
import type { Reporter } from '../progress.js';

/** Prints any error the same way: what failed, the command and its last output, and what to do. */
export function reportError(error: unknown, reporter: Reporter, out: NodeJS.WritableStream = process.stderr): void {
  const e = error instanceof Error ? error : new Error(String(error));
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
