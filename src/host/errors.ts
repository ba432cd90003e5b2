/**
 * Every error a user can see. Each carries a message naming the problem and a hint
 * saying what to do; the CLI prints them all the same way (see cli/report-error.ts).
 */
export class PiImageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ConfigError extends PiImageError {}

export class ProfileError extends PiImageError {}

export class HostToolMissingError extends PiImageError {
  constructor(
    readonly tools: { name: string; fix: string }[],
  ) {
    super(
      `missing host tool${tools.length > 1 ? 's' : ''}: ${tools.map((t) => t.name).join(', ')}`,
      tools.map((t) => `${t.name}: ${t.fix}`).join('\n'),
    );
  }
}

/** A stage's external command failed: keeps the command line and the last lines it printed. */
export class StageError extends PiImageError {
  constructor(
    readonly stage: string,
    message: string,
    hint: string | undefined,
    readonly command?: string,
    readonly outputTail: string[] = [],
  ) {
    super(message, hint);
  }
}

export class DiskFullError extends PiImageError {}

export class InterruptedError extends PiImageError {
  constructor(signal: string) {
    super(`interrupted by ${signal}`, 'nothing was written to the output directory');
  }
}
