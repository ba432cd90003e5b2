import type { LaunchLine } from '../../shared/engines/adapter.js';
import { startEngineUnit, stopEngineUnit, waitEngineReady } from '../engine-control.js';

export type EngineOutcome = { generation: number; state: 'ready' | 'failed'; detail?: string };

/**
 * Starts and stops the engine unit and reports, for each start, whether it became ready. The
 * wait runs in the background (the agent keeps answering meanwhile) and only while an engine
 * starts, never while it serves.
 */
export class EngineRunner {
  private current = 0;
  command?: string;

  constructor(
    private readonly binDirs: string[],
    private readonly report: (outcome: EngineOutcome) => void,
    private readonly log: (line: string) => void,
  ) {}

  async start(generation: number, line: LaunchLine, what: string, ready: () => Promise<boolean>, timeoutMs: number, adopt: boolean): Promise<void> {
    this.current = generation;
    // A unit that cannot be started throws: the caller marks this start failed without a new pass.
    const { command, kept } = await startEngineUnit(line, this.binDirs, adopt);
    this.command = command;
    this.log(`engine ${kept ? 'already running' : 'starting'} as ${what}: ${command}`);
    void waitEngineReady(ready, { timeoutMs, cancelled: () => generation !== this.current }).then((outcome) => {
      if (outcome === 'cancelled') return;
      this.log(`engine ${outcome} (${what})`);
      this.report({ generation, state: outcome, ...(outcome === 'failed' ? { detail: 'the engine did not become ready: journalctl -u pi-image-engine' } : {}) });
    });
  }

  async stop(): Promise<void> {
    this.current = -1;
    await stopEngineUnit();
  }
}
