import { closeSync, openSync } from 'node:fs';
import { execa, ExecaError } from 'execa';
import { DiskFullError, HostToolMissingError, StageError } from '../errors.js';
import type { Reporter } from '../progress.js';
import { HOST_TOOLS } from './host-tools.js';

export interface RunOptions {
  stage: string;
  reporter: Reporter;
  env?: Record<string, string>;
  cwd?: string;
  /** Called for every line the tool prints (stdout and stderr), e.g. to parse progress. */
  onLine?: (line: string) => void;
  signal?: AbortSignal;
  /** What to tell the user when the command fails. */
  hint?: string;
  input?: string;
  /** Send the tool's standard output to this file instead of reading it. */
  stdoutFile?: string;
}

const TAIL_LINES = 25;

/** Runs one external tool; every tool the project uses goes through here. */
export async function runTool(command: string, args: string[], opts: RunOptions): Promise<string> {
  const tail: string[] = [];
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    opts.reporter.emit({ type: 'tool-output', stage: opts.stage, line });
    opts.onLine?.(line);
  };
  const outFd = opts.stdoutFile ? openSync(opts.stdoutFile, 'w') : undefined;
  const child = execa(command, args, {
    env: { LC_ALL: 'C.UTF-8', ...opts.env },
    cwd: opts.cwd,
    cancelSignal: opts.signal,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    // Binary output goes straight to the file descriptor, untouched by any decoding.
    stdout: (outFd ?? 'pipe') as 'pipe', // execa takes a file descriptor here; its typings list only names
    buffer: { stdout: !opts.stdoutFile, stderr: false },
    stripFinalNewline: false,
  });
  splitLines(child.stderr, onLine);
  splitLines(child.stdout, onLine);
  try {
    const result = await child;
    return opts.stdoutFile ? '' : String(result.stdout);
  } catch (error) {
    throw toUserError(command, args, error, tail, opts);
  } finally {
    if (outFd !== undefined) closeSync(outFd);
  }
}

function splitLines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (pending + chunk).split(/\r?\n|\r/);
    pending = parts.pop() ?? '';
    for (const part of parts) if (part.trim()) onLine(part);
  });
  stream.on('end', () => {
    if (pending.trim()) onLine(pending);
  });
}

function toUserError(command: string, args: string[], error: unknown, tail: string[], opts: RunOptions): Error {
  const commandLine = [command, ...args].map(shellQuote).join(' ');
  if (error instanceof ExecaError) {
    if (error.isCanceled) return error;
    if (error.code === 'ENOENT') {
      const tool = HOST_TOOLS.find((t) => t.commands.includes(command));
      return new HostToolMissingError([{ name: command, fix: tool?.fix ?? `install the package that provides ${command}` }]);
    }
    if (tail.some((line) => /No space left on device|ENOSPC|Disk quota exceeded/i.test(line))) {
      return new DiskFullError(
        `${opts.stage}: the disk is full (${command} ran out of space)`,
        'free some space on the output and cache file systems (see PI_IMAGE_CACHE), then run again',
      );
    }
    return new StageError(
      opts.stage,
      `${opts.stage}: ${command} failed (${error.signal ? `signal ${error.signal}` : `exit code ${error.exitCode}`})`,
      opts.hint,
      commandLine,
      tail,
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}

export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
