import type { LeverApply, ResolvedLever } from '../../src/shared/tuning/levers.js';
import type { CommandResult, NodeSystem } from '../../src/shared/tuning/system.js';

export interface FakeNic {
  name: string;
  driver?: string;
  irqs?: number[];
  queues?: string[];
}

/**
 * A machine made of given readings: files, directories, command outputs and NICs. Records
 * what is written, run and slept, so a test can check what applying a lever did.
 */
export class FakeSystem implements NodeSystem {
  readonly files: Map<string, string>;
  readonly writes: [path: string, value: string][] = [];
  readonly ran: string[] = [];
  slept = 0;

  constructor(
    private readonly given: {
      files?: Record<string, string>;
      dirs?: Record<string, string[]>;
      /** Keyed by the command line ("ethtool -g eth0"); a command not listed is not installed. */
      commands?: Record<string, Partial<CommandResult>>;
      /** Paths a write fails on, with the error. */
      unwritable?: Record<string, string>;
      nics?: FakeNic[];
    } = {},
  ) {
    this.files = new Map(Object.entries(given.files ?? {}));
  }

  async readText(path: string) {
    return this.files.get(path)?.trim();
  }

  async writeText(path: string, value: string) {
    const error = this.given.unwritable?.[path];
    if (error) return error;
    this.writes.push([path, value]);
    this.files.set(path, value);
    return undefined;
  }

  async listDir(path: string) {
    return [...(this.given.dirs?.[path] ?? [])].sort();
  }

  async run(command: string, args: string[]): Promise<CommandResult> {
    const line = [command, ...args].join(' ');
    this.ran.push(line);
    const r = this.given.commands?.[line];
    return r ? { code: 0, stdout: '', stderr: '', missing: false, ...r } : { code: -1, stdout: '', stderr: '', missing: true };
  }

  async sleep(ms: number) {
    this.slept += ms;
  }

  async physicalNics() {
    return (this.given.nics ?? []).map((n) => n.name);
  }

  async nicDriver(nic: string) {
    return this.nic(nic)?.driver ?? 'unknown';
  }

  async nicIrqs(nic: string) {
    return this.nic(nic)?.irqs ?? [];
  }

  async rxQueues(nic: string) {
    return this.nic(nic)?.queues ?? [];
  }

  private nic(name: string) {
    return this.given.nics?.find((n) => n.name === name);
  }
}

/** A lever as resolveLevers makes it: on and meant for the board unless told otherwise. */
export function lever(id: string, apply: LeverApply, opts: { enabled?: boolean; onBoard?: boolean; purpose?: string } = {}): ResolvedLever {
  return { id, purpose: opts.purpose ?? `${id} purpose`, effect: '', boards: ['pi5'], enabled: opts.enabled ?? true, onBoard: opts.onBoard ?? true, apply };
}

export const logRecorder = () => {
  const lines: string[] = [];
  return { lines, log: (line: string) => void lines.push(line) };
};
