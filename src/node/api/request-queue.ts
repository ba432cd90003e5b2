/** The engines serve one request at a time: requests wait here, in order, up to a bound. */
export class RequestQueue {
  private running = false;
  private waiting: (() => void)[] = [];

  constructor(readonly maxWaiting: number) {}

  get depth(): number {
    return this.waiting.length + (this.running ? 1 : 0);
  }

  /** Runs `job` when it is its turn; undefined (and `job` not run) when the queue is full. */
  async run<T>(job: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.running) {
      if (this.waiting.length >= this.maxWaiting) return undefined;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running = true;
    try {
      return { value: await job() };
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running = false;
    }
  }
}
