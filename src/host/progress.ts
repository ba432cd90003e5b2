/**
 * Progress of a long run, as events. The pipeline only emits events; a reporter turns
 * them into a human display (stderr) or NDJSON (`--json`, stdout).
 */
export type ProgressEvent =
  | { type: 'stage-start'; stage: string; title: string }
  | { type: 'stage-progress'; stage: string; fraction?: number; detail?: string }
  | { type: 'stage-end'; stage: string; cached: boolean; seconds: number; key?: string }
  | { type: 'tool-output'; stage: string; line: string }
  | { type: 'result'; data: unknown }
  | { type: 'warning'; message: string }
  | { type: 'error'; stage?: string; message: string; hint?: string; command?: string; outputTail?: string[] };

export interface Reporter {
  emit(event: ProgressEvent): void;
  readonly verbose: boolean;
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const m = Math.floor(seconds / 60);
  return `${m}m${String(Math.round(seconds - m * 60)).padStart(2, '0')}s`;
}

export class JsonReporter implements Reporter {
  constructor(
    readonly verbose: boolean,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}
  emit(event: ProgressEvent): void {
    if (event.type === 'tool-output' && !this.verbose) return;
    this.out.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  }
}

/** Human display: one redrawn line per stage on a terminal, plain lines otherwise. */
export class HumanReporter implements Reporter {
  private started = new Map<string, number>();
  private lastPlainStep = new Map<string, number>();
  private lineOpen = false;

  constructor(
    readonly verbose: boolean,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  private get live(): boolean {
    return Boolean(this.out.isTTY) && !this.verbose;
  }

  private elapsed(stage: string): string {
    return formatSeconds((Date.now() - (this.started.get(stage) ?? Date.now())) / 1000);
  }

  private redraw(text: string): void {
    if (this.live) {
      this.out.write(`\r\x1b[2K${text}`);
      this.lineOpen = true;
    } else {
      this.println(text);
    }
  }

  private println(text: string): void {
    if (this.lineOpen) this.out.write('\r\x1b[2K');
    this.lineOpen = false;
    this.out.write(`${text}\n`);
  }

  emit(event: ProgressEvent): void {
    switch (event.type) {
      case 'stage-start':
        this.started.set(event.stage, Date.now());
        this.redraw(`▶ ${event.stage}: ${event.title}`);
        break;
      case 'stage-progress': {
        const pct = event.fraction === undefined ? undefined : Math.floor(event.fraction * 100);
        if (!this.live) {
          // Plain output: one line per 10 % step or per new phase, not a flood.
          const step = pct === undefined ? -1 : Math.floor(pct / 10);
          if (pct !== undefined && step === this.lastPlainStep.get(event.stage)) return;
          this.lastPlainStep.set(event.stage, step);
        }
        const bar = pct === undefined ? '' : `${progressBar(event.fraction ?? 0)} ${String(pct).padStart(3)}% `;
        this.redraw(`  ${event.stage}: ${bar}${event.detail ?? ''} (${this.elapsed(event.stage)})`);
        break;
      }
      case 'stage-end':
        this.println(
          `✔ ${event.stage}: ${event.cached ? 'cached' : 'done'} in ${formatSeconds(event.seconds)}`,
        );
        break;
      case 'tool-output':
        if (this.verbose) this.println(`  │ ${event.line}`);
        break;
      case 'warning':
        this.println(`! ${event.message}`);
        break;
      case 'result':
        break;
      case 'error':
        break; // printed by the CLI's error printer
    }
  }
}

function progressBar(fraction: number, width = 24): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export const silentReporter: Reporter = { verbose: false, emit: () => {} };
