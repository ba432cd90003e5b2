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
  | { type: 'error'; stage?: string; message: string; hint?: string; command?: string; outputTail?: string[] }
  // pi-image emulate: a node reached a boot milestone; the LAN is up; a root serves; its answer.
  | { type: 'node'; node: number; milestone: string }
  | { type: 'lan'; namespace: string; apiPorts: number[] }
  | { type: 'serving'; url: string; root: number }
  | { type: 'answer'; content: string; finishReason: string };

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

/** At most one plain progress line per stage in this time, unless it reached a new 10 % step. */
const PLAIN_PROGRESS_INTERVAL_MS = 5000;

/**
 * One line of changing status. On a terminal it is redrawn in place (carriage return, erase
 * line); on a file or pipe each new status is a plain line of its own, with no control codes.
 * Every terminal control code pi-image writes comes from here.
 */
export class StatusLine {
  /** On a terminal: a status is on screen, its line not ended yet. */
  private open = false;
  private last: string | undefined;

  constructor(
    private readonly out: NodeJS.WritableStream = process.stderr,
    /** Redraw in place: by default when `out` is a terminal. */
    readonly live: boolean = Boolean((out as NodeJS.WriteStream).isTTY),
  ) {}

  /** Shows a status: redrawn over the last one on a terminal, a new line elsewhere (unless it did not change). */
  show(text: string): void {
    if (text === this.last) return;
    this.last = text;
    if (this.live) {
      // Cut to the terminal's width: a wrapped line could not be redrawn in place.
      const width = (this.out as NodeJS.WriteStream).columns;
      this.out.write(`\r\x1b[2K${width > 1 && text.length >= width ? text.slice(0, width - 1) : text}`);
      this.open = true;
    } else {
      this.out.write(`${text}\n`);
    }
  }

  /** A line of its own. A status on screen is kept above it, or written over with `replace`. */
  println(text: string, replace = false): void {
    if (this.open) this.out.write(replace ? '\r\x1b[2K' : '\n');
    this.open = false;
    this.last = undefined;
    this.out.write(`${text}\n`);
  }

  /** Ends the status's line on a terminal, so that whatever is written next starts on a line of its own. */
  done(): void {
    if (this.open) this.out.write('\n');
    this.open = false;
    this.last = undefined;
  }
}

/**
 * Human display. On a terminal: one line per stage, redrawn as it progresses. On a file or
 * pipe (or with --verbose, where tool output is interleaved): plain lines, one when a stage
 * starts and one when it ends, and between them a progress line only when the stage reaches
 * a new 10 % step or a few seconds have passed since its last one.
 */
export class HumanReporter implements Reporter {
  private started = new Map<string, number>();
  /** Per stage: the 10 % step and the time of the last plain progress line. */
  private lastPlain = new Map<string, { step?: number; at: number }>();
  private readonly line: StatusLine;

  constructor(
    readonly verbose: boolean,
    out: NodeJS.WriteStream = process.stderr,
    private readonly now: () => number = Date.now,
  ) {
    this.line = new StatusLine(out, Boolean(out.isTTY) && !verbose);
  }

  private elapsed(stage: string): string {
    const now = this.now();
    return formatSeconds((now - (this.started.get(stage) ?? now)) / 1000);
  }

  /** On a file or pipe: is this progress event worth a line of its own? */
  private plainLineDue(stage: string, pct: number | undefined): boolean {
    const now = this.now();
    const last = this.lastPlain.get(stage);
    const step = pct === undefined ? undefined : Math.floor(pct / 10);
    const newStep = step !== undefined && step !== last?.step;
    if (last && !newStep && now - last.at < PLAIN_PROGRESS_INTERVAL_MS) return false;
    this.lastPlain.set(stage, { step: step ?? last?.step, at: now });
    return true;
  }

  emit(event: ProgressEvent): void {
    switch (event.type) {
      case 'stage-start':
        this.started.set(event.stage, this.now());
        this.lastPlain.delete(event.stage);
        this.line.show(`▶ ${event.stage}: ${event.title}`);
        break;
      case 'stage-progress': {
        // (+1e-9: 0.29 × 100 is 28.999…, which is 29 %, not 28 %)
        const pct = event.fraction === undefined ? undefined : Math.floor(event.fraction * 100 + 1e-9);
        if (!this.line.live && !this.plainLineDue(event.stage, pct)) return;
        const bar = pct === undefined ? '' : `${progressBar(event.fraction ?? 0)} ${String(pct).padStart(3)}% `;
        this.line.show(`  ${event.stage}: ${bar}${event.detail ?? ''} (${this.elapsed(event.stage)})`);
        break;
      }
      case 'stage-end':
        this.line.println(`✔ ${event.stage}: ${event.cached ? 'cached' : 'done'} in ${formatSeconds(event.seconds)}`, true);
        break;
      case 'tool-output':
        if (this.verbose) this.line.println(`  │ ${event.line}`, true);
        break;
      case 'warning':
        this.line.println(`! ${event.message}`, true);
        break;
      case 'result':
        this.line.done();
        break;
      case 'error':
        this.line.done(); // the message is printed by the CLI's error printer, on a line of its own
        break;
    }
  }
}

function progressBar(fraction: number, width = 24): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export const silentReporter: Reporter = { verbose: false, emit: () => {} };
