import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HumanReporter, StatusLine, type ProgressEvent } from '../../../src/host/progress.js';
import { REPO } from '../../helpers/cli.js';

/** A stream like stderr: a terminal when `tty`, else a file or pipe. Collects what is written. */
function stream(tty: boolean): { out: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough();
  const chunks: string[] = [];
  s.on('data', (c: Buffer) => chunks.push(c.toString()));
  if (tty) Object.assign(s, { isTTY: true, columns: 80 });
  return { out: s as unknown as NodeJS.WriteStream, text: () => chunks.join('') };
}

/** A build's worth of events: a stage with fine-grained progress, a flood of detail-only progress, a warning. */
function run(reporter: HumanReporter, tick: () => void): void {
  const emit = (e: ProgressEvent) => {
    reporter.emit(e);
    tick();
  };
  emit({ type: 'stage-start', stage: 'disk', title: 'partitions and file systems' });
  for (let i = 0; i <= 100; i++) emit({ type: 'stage-progress', stage: 'disk', fraction: i / 100, detail: 'root partition (ext4)' });
  emit({ type: 'stage-end', stage: 'disk', cached: false, seconds: 12.3 });
  emit({ type: 'stage-start', stage: 'artifacts', title: 'checksums' });
  for (let i = 0; i < 60; i++) emit({ type: 'stage-progress', stage: 'artifacts', detail: `recording the checksum of file${i}` });
  emit({ type: 'warning', message: 'something to know' });
  emit({ type: 'stage-end', stage: 'artifacts', cached: true, seconds: 0.4 });
}

const progressLines = (text: string, stage: string) => text.split('\n').filter((l) => l.startsWith(`  ${stage}: `));

describe('HumanReporter', () => {
  it('writes plain lines to a file or pipe: no carriage return, no escape sequence, no flood', () => {
    const { out, text } = stream(false);
    const reporter = new HumanReporter(false, out, () => 0); // a clock that stands still: only the 10 % steps count
    run(reporter, () => {});
    const output = text();
    expect(output).not.toMatch(/[\r\x1b]/);
    expect(output.endsWith('\n')).toBe(true);
    const lines = output.split('\n');
    expect(lines).toContain('▶ disk: partitions and file systems');
    expect(lines).toContain('✔ disk: done in 12.3s');
    expect(lines).toContain('✔ artifacts: cached in 0.4s');
    expect(lines).toContain('! something to know');
    // One line per 10 % step: 0 %, 10 %, … 100 %.
    expect(progressLines(output, 'disk')).toHaveLength(11);
    expect(progressLines(output, 'disk').at(-1)).toMatch(/100% root partition \(ext4\)/);
    // Progress without a fraction: the first one, then nothing more while the clock stands still.
    expect(progressLines(output, 'artifacts')).toEqual(['  artifacts: recording the checksum of file0 (0.0s)']);
  });

  it('on a file or pipe, prints at most one progress line per few seconds', () => {
    const { out, text } = stream(false);
    let now = 0;
    const reporter = new HumanReporter(false, out, () => now);
    run(reporter, () => (now += 1000)); // one event a second
    const output = text();
    expect(output).not.toMatch(/[\r\x1b]/);
    // 60 events over 60 s: one line per 5 s at most.
    const lines = progressLines(output, 'artifacts');
    expect(lines.length).toBeGreaterThanOrEqual(10);
    expect(lines.length).toBeLessThanOrEqual(13);
    // The 10 % steps still come through even when they come faster than the time limit.
    expect(progressLines(output, 'disk').length).toBeGreaterThanOrEqual(11);
    expect(progressLines(output, 'disk').length).toBeLessThanOrEqual(11 + 21);
  });

  it('redraws one live line per stage on a terminal', () => {
    const { out, text } = stream(true);
    const reporter = new HumanReporter(false, out, () => 0);
    run(reporter, () => {});
    const output = text();
    expect(output).toContain('\r\x1b[2K▶ disk: partitions and file systems');
    expect(output.match(/\r\x1b\[2K {2}disk: /g)?.length).toBe(101); // every event redrawn in place
    expect(output).toContain('\r\x1b[2K✔ disk: done in 12.3s\n');
  });

  it('ends an open progress line on a terminal before an error is printed', () => {
    const { out, text } = stream(true);
    const reporter = new HumanReporter(false, out, () => 0);
    reporter.emit({ type: 'stage-start', stage: 'disk', title: 'x' });
    reporter.emit({ type: 'stage-progress', stage: 'disk', fraction: 0.5, detail: 'root partition' });
    reporter.emit({ type: 'error', stage: 'disk', message: 'mke2fs failed' });
    expect(text().endsWith('\n')).toBe(true);
  });

  it('on a terminal with --verbose (tool output interleaved) writes plain lines', () => {
    const { out, text } = stream(true);
    const reporter = new HumanReporter(true, out, () => 0);
    reporter.emit({ type: 'stage-start', stage: 'base', title: 'mmdebstrap' });
    reporter.emit({ type: 'tool-output', stage: 'base', line: 'I: running apt-get update...' });
    reporter.emit({ type: 'stage-progress', stage: 'base', fraction: 0.2, detail: 'downloading' });
    expect(text()).not.toMatch(/[\r\x1b]/);
    expect(text()).toContain('  │ I: running apt-get update...\n');
  });
});

describe('StatusLine (the nodes of `pi-image emulate`)', () => {
  it('on a file or pipe, prints each new status once, as a plain line', () => {
    const { out, text } = stream(false);
    const status = new StatusLine(out);
    status.show('node1: kernel');
    status.show('node1: kernel');
    status.show('node1: systemd');
    status.println('3 nodes on a private LAN');
    status.show('node1: serving');
    status.done();
    expect(text()).toBe('node1: kernel\nnode1: systemd\n3 nodes on a private LAN\nnode1: serving\n');
  });

  it('on a terminal, redraws the status in place and ends it before other lines', () => {
    const { out, text } = stream(true);
    const status = new StatusLine(out);
    status.show('node1: kernel');
    status.show('node1: systemd');
    status.println('3 nodes on a private LAN');
    status.show('node1: serving');
    status.done();
    status.done();
    expect(text()).toBe('\r\x1b[2Knode1: kernel\r\x1b[2Knode1: systemd\n3 nodes on a private LAN\n\r\x1b[2Knode1: serving\n');
  });

  it('on a terminal, cuts a status to its width (a wrapped line cannot be redrawn in place)', () => {
    const { out, text } = stream(true); // 80 columns
    new StatusLine(out).show('x'.repeat(100));
    expect(text()).toBe(`\r\x1b[2K${'x'.repeat(79)}`);
  });
});

describe('terminal control codes', () => {
  it('are written only by src/host/progress.ts, which checks for a terminal first', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
    const offenders = files(join(REPO, 'src/host'))
      .filter((f) => !f.endsWith('/host/progress.ts'))
      .filter((f) => /\\x1b|\\u001b|\\033|\\e\[|write\(\s*[`'"]\\r/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(REPO, f));
    expect(offenders).toEqual([]);
  });
});
