import { spawn, type ChildProcess } from 'node:child_process';
import { delimiter } from 'node:path';
import type { LaunchLine } from '../engines/adapter.js';

/**
 * Starts an engine from its launch line, finding the command on `binDirs` first (where a
 * bring-your-own engine such as dllama is installed), then PATH. Output goes to the
 * journal through the agent's stdout/stderr.
 */
export function startEngine(line: LaunchLine, opts: { binDirs?: string[]; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const env = { ...process.env, ...opts.env };
  env.PATH = [...(opts.binDirs ?? []), env.PATH ?? ''].filter(Boolean).join(delimiter);
  return spawn(line.command, line.args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
}
