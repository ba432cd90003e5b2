import { closeSync, openSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { execa, ExecaError } from 'execa';
import { DiskFullError, HostToolMissingError, StageError } from '../errors.js';
import type { Reporter } from '../progress.js';
import { HOST_TOOLS } from './host-tools.js';

/*
 * Every external process pi-image starts goes through this file: runTool for a tool that runs
 * to its end (its output captured, a failure turned into an error the CLI explains), startTool
 * for one that keeps running beside pi-image (QEMU, the port relay). Both use execa, which
 * also kills whatever still runs when pi-image exits.
 */

export interface RunOptions {
  stage: string;
  reporter: Reporter;
  env?: Record<string, string>;
  /** Called for every line the tool prints (stdout and stderr), e.g. to parse progress. */
  onLine?: (line: string) => void;
  signal?: AbortSignal;
  /** What to tell the user when the command fails. */
  hint?: string;
  /** Written to the tool's standard input (otherwise it has none). */
  input?: string;
  /** Send the tool's standard output to this file instead of reading it. */
  stdoutFile?: string;
}

const TAIL_LINES = 25;

/** Runs one external tool to its end; resolves with its standard output, rejects with a user error. */
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

export interface StartOptions {
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** 'pipe' to write to the process (QEMU's serial console); default: no input. */
  stdin?: 'pipe' | 'ignore';
  /** 'inherit' shares pi-image's stderr; default: readable from the handle. */
  stderr?: 'pipe' | 'inherit';
}

/** A process started by startTool. */
export interface ToolProcess {
  /** Set when started with `stdin: 'pipe'`. */
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /** Set unless stderr is inherited. */
  readonly stderr: Readable | null;
  /** Settles when the process has ended, however it ended (even if it never started): never rejects. */
  readonly ended: Promise<{ exitCode?: number; signal?: string }>;
  /** Sends a signal (default SIGTERM, followed by SIGKILL if the process still runs 5 s later). */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts a process that runs beside pi-image until it ends or is killed, e.g. QEMU. Nothing
 * of its output is kept here: read its streams. Its end, whatever the exit status, is no error.
 */
export function startTool(command: string, args: string[], opts: StartOptions = {}): ToolProcess {
  const child = execa(command, args, {
    env: opts.env,
    stdin: opts.stdin ?? 'ignore',
    stdout: 'pipe',
    stderr: opts.stderr ?? 'pipe',
    reject: false,
    buffer: false,
  });
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    ended: child.then((r) => ({ exitCode: r.exitCode, signal: r.signal })),
    kill: (signal) => void child.kill(signal),
  };
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

/** A word as a POSIX shell reads it back: left as it is when it is plain, else in single quotes. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
