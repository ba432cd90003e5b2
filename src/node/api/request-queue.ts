/** Thrown by `Ticket.run` when the ticket left the queue (its client went away) before its turn. */
export class LeftQueue extends Error {
  constructor() {
    super('the request left the queue before its turn');
  }
}

/** A place in the queue, taken before the request's body is read. */
export interface Ticket {
  /** Waits for the engine, then runs `job` on it; rejects with LeftQueue if released first. */
  run<T>(job: () => Promise<T>): Promise<T>;
  /** Leaves the queue (a client that went away, a body that was refused). No-op once running or done. */
  release(): void;
}

interface Place {
  state: 'admitted' | 'ready' | 'running' | 'gone';
  start?: () => void;
  leave?: () => void;
}

/**
 * The engines serve one request at a time. A request takes a place here as soon as its headers
 * arrive — before its body is read, so a full queue is answered at once and holds no bodies —
 * and runs when the engine is free and its body has arrived, in the order bodies arrived.
 * At most one runs and `maxWaiting` more hold a place.
 */
export class RequestQueue {
  private places = new Set<Place>();
  private ready: Place[] = [];
  private running = false;
  private durations: number[] = [];

  constructor(readonly maxWaiting: number) {}

  /** Requests holding a place: the one running and those waiting (bodies still arriving included). */
  get depth(): number {
    return this.places.size;
  }

  /** A place in the queue, or undefined when it is full. */
  admit(): Ticket | undefined {
    if (this.places.size >= this.maxWaiting + 1) return undefined;
    const place: Place = { state: 'admitted' };
    this.places.add(place);
    return {
      run: (job) => this.run(place, job),
      release: () => this.leave(place),
    };
  }

  /** Seconds a refused client should wait before trying again (Retry-After): the recent jobs' length times the queue's depth. */
  retryAfterSeconds(): number {
    const average = this.durations.length ? this.durations.reduce((a, b) => a + b, 0) / this.durations.length : 5000;
    return Math.min(60, Math.max(1, Math.ceil((average * Math.max(1, this.places.size)) / 1000)));
  }

  private leave(place: Place): void {
    if (place.state !== 'admitted' && place.state !== 'ready') return;
    place.state = 'gone';
    this.places.delete(place);
    const at = this.ready.indexOf(place);
    if (at >= 0) this.ready.splice(at, 1);
    place.leave?.();
  }

  private async run<T>(place: Place, job: () => Promise<T>): Promise<T> {
    if (place.state !== 'admitted') throw new LeftQueue();
    place.state = 'ready';
    if (this.running) {
      await new Promise<void>((resolve, reject) => {
        place.start = resolve;
        place.leave = () => reject(new LeftQueue());
        this.ready.push(place);
      });
    }
    // Either the engine was free or `next` handed it over (still marked running): take it.
    this.running = true;
    place.state = 'running';
    const started = performance.now();
    try {
      return await job();
    } finally {
      this.durations = [...this.durations.slice(-7), performance.now() - started];
      place.state = 'gone';
      this.places.delete(place);
      this.next();
    }
  }

  private next(): void {
    const place = this.ready.shift();
    if (place) place.start?.();
    else this.running = false;
  }
}
