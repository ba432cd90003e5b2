import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const REPO = join(import.meta.dirname, '../..');
const CLI = join(REPO, 'dist/host/cli/main.js');

export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  events: Record<string, unknown>[];
}

/** Runs the compiled CLI (as a user would) and collects its --json events when asked for them. */
export async function runCli(args: string[], opts: { env?: Record<string, string>; extendEnv?: boolean; timeoutMs?: number } = {}): Promise<CliRun> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (scripts/test does)`);
  const result = await execa(process.execPath, [CLI, ...args], {
    reject: false,
    env: opts.env,
    extendEnv: opts.extendEnv ?? true,
    timeout: opts.timeoutMs ?? 45 * 60_000,
    stdin: 'ignore',
  });
  const events = args.includes('--json')
    ? String(result.stdout)
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
    : [];
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr), events };
}

/** Fails with the build's output when it did not succeed. */
export function expectOk(run: CliRun): void {
  if (run.exitCode !== 0) throw new Error(`build failed (${run.exitCode}):\n${run.stderr}\n${run.stdout.slice(-4000)}`);
}

/** Stage name → whether it came from the cache, from a --json run. */
export function stageCaching(run: CliRun): Record<string, boolean> {
  return Object.fromEntries(run.events.filter((e) => e.type === 'stage-end').map((e) => [e.stage as string, e.cached as boolean]));
}

export const TEST_CACHE = process.env.PI_IMAGE_CACHE ?? '/var/cache/pi-image-test';

/**
 * Flags every qemu-board build in the tests shares, so they share one cached base: the
 * archive here is a snapshot whose forky Release files are past Valid-Until, and a fixed
 * cluster secret keeps builds reproducible (without one, each build makes a new secret).
 */
export const QEMU_TEST_FLAGS = ['--no-check-valid-until', '--cluster-secret', join(REPO, 'test/fixtures/cluster.secret')];
