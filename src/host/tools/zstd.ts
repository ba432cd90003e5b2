import type { Reporter } from '../progress.js';
import { runTool } from './run.js';

/** Multi-threaded zstd of a file, with zstd's own progress turned into stage progress. */
export async function compressZstd(input: string, output: string, opts: { level: number; stage: string; reporter: Reporter; signal?: AbortSignal }): Promise<void> {
  await runTool('zstd', ['-T0', `-${opts.level}`, '--progress', '-f', '-o', output, input], {
    stage: opts.stage,
    reporter: opts.reporter,
    signal: opts.signal,
    onLine: (line) => {
      const m = /Read:\s*([\d.]+)\s*(\w?i?B)\s*\/\s*([\d.]+)\s*(\w?i?B)/.exec(line);
      if (!m) return;
      const fraction = toBytes(Number(m[1]), m[2] ?? 'B') / Math.max(1, toBytes(Number(m[3]), m[4] ?? 'B'));
      opts.reporter.emit({ type: 'stage-progress', stage: opts.stage, fraction: Math.min(1, fraction), detail: 'compressing (zstd)' });
    },
  });
}

function toBytes(value: number, unit: string): number {
  const scale: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
  return value * (scale[unit] ?? 1);
}
