import type { LaunchLine } from '../../shared/engines/adapter.js';
import { engineInvocation, startEngineUnit, stopEngineUnit, waitEngineReady } from '../engine-control.js';

/** `run`: which run of the engine unit became ready (its invocation id, shortened). */
export type EngineOutcome = { generation: number; state: 'ready' | 'failed'; detail?: string; run?: string };

/** How one run of the engine unit ended, as its ExecStopPost wrote it (ENGINE_EXIT_PATH). */
export interface EngineExit {
  invocation: string;
  /** systemd's $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS (`success exited 0`, `signal killed SEGV`, `core-dump dumped ABRT`…). */
  result: string;
  code: string;
  status: string;
}

export function parseEngineExit(text: string): EngineExit | undefined {
  const [invocation, result, code, status] = text.trim().split(/\s+/);
  return invocation && result && code && status !== undefined ? { invocation, result, code, status } : undefined;
}

/**
 * Starts and stops the engine unit and reports, for each start, whether it became ready. The
 * wait runs in the background (the agent keeps answering meanwhile) and only while an engine
 * starts, never while it serves.
 */
export class EngineRunner {
  private current = 0;
  /** The unit's run this agent started (or adopted); an exit of any other run is not news. */
  private invocation?: string;
  command?: string;

  constructor(
    private readonly binDirs: string[],
    private readonly report: (outcome: EngineOutcome) => void,
    private readonly log: (line: string) => void,
  ) {}

  /** `peers`: what the engine runs with (a root's workers' runs): part of what an adopted engine must match. */
  async start(generation: number, line: LaunchLine, what: string, ready: () => Promise<boolean>, timeoutMs: number, adopt: boolean, peers?: string): Promise<void> {
    this.current = generation;
    // The run being replaced reports its exit while the unit restarts: not a crash.
    this.invocation = undefined;
    // A unit that cannot be started throws: the caller marks this start failed without a new pass.
    const { command, kept } = await startEngineUnit(line, this.binDirs, adopt, peers);
    this.command = command;
    this.invocation = await engineInvocation();
    this.log(`engine ${kept ? 'already running' : 'starting'} as ${what}: ${command}`);
    void waitEngineReady(ready, { timeoutMs, cancelled: () => generation !== this.current }).then((outcome) => {
      if (outcome === 'cancelled') return;
      this.log(`engine ${outcome} (${what})`);
      const run = this.invocation?.slice(0, 12);
      this.report({ generation, state: outcome, ...(outcome === 'failed' ? { detail: 'the engine did not become ready: journalctl -u pi-image-engine' } : run ? { run } : {}) });
    });
  }

  /**
   * The generation whose engine just ended on its own, if `exit` is one: the run this agent
   * started, ended by a signal, a failure or an exit nobody asked for (the agent's own stops
   * and restarts forget the run first).
   */
  crashed(exit: EngineExit): { generation: number; what: string } | undefined {
    if (!this.invocation || exit.invocation !== this.invocation) return undefined;
    if (exit.result === 'success' && exit.code !== 'exited') return undefined;
    this.invocation = undefined;
    const what = exit.code === 'exited' ? `exited with status ${exit.status}` : `${exit.code === 'dumped' ? 'dumped core on' : 'killed by'} signal ${exit.status}`;
    return { generation: this.current, what };
  }

  async stop(): Promise<void> {
    this.current = -1;
    this.invocation = undefined;
    await stopEngineUnit();
  }
}
