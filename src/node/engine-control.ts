import { readFile, realpath, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { LaunchLine } from '../shared/engines/adapter.js';
import { writeFileAtomic } from '../shared/atomic-write.js';
import { run } from './sys.js';
import { ENGINE_ENV_PATH, ENGINE_UNIT } from '../shared/node-paths.js';

async function isExecutable(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isFile() && (s.mode & 0o111) !== 0, () => false);
}

/** The absolute path of an engine command: the bring-your-own bin folder first, then PATH. */
export async function resolveCommand(command: string, binDirs: string[], path = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): Promise<string> {
  // Through links (the runtime's `current`): the launch line names the version it runs, and a
  // switch of the link does not change what a running engine is.
  if (command.startsWith('/')) {
    if (await isExecutable(command)) return realpath(command);
  } else {
    for (const dir of [...binDirs, ...path.split(delimiter)].filter(Boolean)) if (await isExecutable(join(dir, command))) return realpath(join(dir, command));
  }
  throw new Error(`engine command ${command} is not installed on this node (looked in ${[...binDirs, 'PATH'].join(', ')})`);
}

/**
 * The launch line as the unit runs it: the command resolved to a path, every argument one
 * word, because systemd splits `$PI_IMAGE_ENGINE_ARGV` on whitespace.
 */
export async function engineArgv(line: LaunchLine, binDirs: string[]): Promise<string[]> {
  const argv = [await resolveCommand(line.command, binDirs), ...line.args];
  const bad = argv.find((a) => !isPlainWord(a));
  if (bad !== undefined) throw new Error(`engine argument ${JSON.stringify(bad)} has characters a launch line may not carry`);
  return argv;
}

const isPlainWord = (a: string) => /^[\w@%+=:,./-]+$/.test(a);

/** The launch line's library folder through links, as the command is: the version it names, not `current`. */
async function libraryDirOf(line: LaunchLine): Promise<string | undefined> {
  if (line.libraryDir === undefined) return undefined;
  const dir = await realpath(line.libraryDir).catch(() => {
    throw new Error(`the engine's library folder ${line.libraryDir} is missing on this node`);
  });
  if (!isPlainWord(dir)) throw new Error(`the engine's library folder ${JSON.stringify(dir)} has characters an environment file may not carry`);
  return dir;
}

/**
 * The engine runs as its own systemd unit, so the tuning profile's drop-in (CPU affinity,
 * jemalloc, memlock, priority) applies to it and systemd restarts it if it dies. The agent
 * only writes its launch line and starts or stops the unit. An engine already running with
 * the same launch line is kept when `adopt` says so (the agent restarted, the engine did
 * not) and it runs with the same `peers` (a root's workers, down to their engine's run: a
 * worker whose engine server restarted meanwhile dropped this engine's connection and layers):
 * restarting it would cut its workers' connections for nothing.
 */
export async function startEngineUnit(line: LaunchLine, binDirs: string[], adopt: boolean, peers = ''): Promise<{ command: string; kept: boolean }> {
  const argv = await engineArgv(line, binDirs);
  const env = engineEnvFile(argv, peers, await libraryDirOf(line));
  const command = argv.join(' ');
  const running = adopt && (await readFile(ENGINE_ENV_PATH, 'utf8').catch(() => undefined)) === env && (await run('systemctl', ['is-active', '--quiet', ENGINE_UNIT])).code === 0;
  if (running) return { command, kept: true };
  await writeFileAtomic(ENGINE_ENV_PATH, env);
  const r = await run('systemctl', ['restart', ENGINE_UNIT]);
  if (r.code !== 0) throw new Error(`systemctl restart ${ENGINE_UNIT}: ${r.stderr.trim()}`);
  return { command, kept: false };
}

/**
 * The unit's environment file: the launch line, where its libraries are (a runtime that
 * carries its own: they come before the system's), and what the engine runs with (only compared).
 */
export const engineEnvFile = (argv: string[], peers: string, libraryDir?: string) =>
  `# Written by pi-node agent: the engine's launch line.\n${peers ? `# With: ${peers}\n` : ''}${libraryDir ? `LD_LIBRARY_PATH=${libraryDir}\n` : ''}PI_IMAGE_ENGINE_ARGV="${argv.join(' ')}"\n`;

/** The id of the engine unit's current run (a new one at every start, restarts by systemd included). */
export async function engineInvocation(): Promise<string | undefined> {
  const r = await run('systemctl', ['show', '-p', 'InvocationID', '--value', ENGINE_UNIT]);
  return r.stdout.trim() || undefined;
}

export async function stopEngineUnit(): Promise<void> {
  await run('systemctl', ['stop', ENGINE_UNIT]);
}

/** Whether something listens on a TCP port, read from /proc (connecting would disturb a single-client RPC server). */
export async function isListening(port: number): Promise<boolean> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') return true;
    }
  }
  return false;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (only while an engine starts; never while it serves) until `ready()` holds, the unit
 * failed, or `cancelled()` says a newer start superseded this one.
 */
export async function waitEngineReady(ready: () => Promise<boolean>, opts: { timeoutMs: number; cancelled: () => boolean }): Promise<'ready' | 'failed' | 'cancelled'> {
  const deadline = Date.now() + opts.timeoutMs;
  let checks = 0;
  while (Date.now() < deadline) {
    if (opts.cancelled()) return 'cancelled';
    if (await ready()) return 'ready';
    // The unit restarts itself on failure; a unit that keeps failing is reported, not hidden.
    if (++checks % 10 === 0 && (await run('systemctl', ['is-failed', '--quiet', ENGINE_UNIT])).code === 0) return 'failed';
    await sleep(1000);
  }
  return 'failed';
}

/** GET url answers 200. */
export async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}
