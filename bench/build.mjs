// See bench/build. Prints stage times and the two ratios the build pipeline is held to.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repo = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'pi-image-bench-'));
const cache = join(work, 'cache');
const layer = join(work, 'layer');
cpSync(join(repo, 'test/fixtures/layers/serial-console'), layer, { recursive: true });

function build(label) {
  process.stderr.write(`bench: ${label} build…\n`);
  const started = Date.now();
  const run = spawnSync(process.execPath, [join(repo, 'dist/host/cli/main.js'), 'build', '--json', '--board', 'qemu', '--no-check-valid-until', '--cluster-secret', join(repo, 'test/fixtures/cluster.secret'), '--layer', layer, '--out', join(work, 'out')], {
    env: { ...process.env, PI_IMAGE_CACHE: cache },
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (run.status !== 0) {
    process.stderr.write(run.stderr);
    throw new Error(`${label} build failed`);
  }
  const events = run.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const result = events.find((e) => e.type === 'result').data;
  return { wall: (Date.now() - started) / 1000, ...result };
}

try {
  const cold = build('cold');
  writeFileSync(join(layer, 'overlay/usr/local/bin/pi-image-test-marker.hbs'), '#!/bin/sh\necho "bench {{hostname}}"\n');
  const warm = build('warm (one overlay file changed)');

  const fmt = (s) => `${s.toFixed(1)}s`.padStart(8);
  console.log('stage        cold     warm   (cached?)');
  for (const s of cold.stages) {
    const w = warm.stages.find((x) => x.stage === s.stage);
    console.log(`${s.stage.padEnd(10)} ${fmt(s.seconds)} ${fmt(w.seconds)}   ${w.cached ? 'cached' : 'rebuilt'}`);
  }
  console.log(`${'total'.padEnd(10)} ${fmt(cold.wall)} ${fmt(warm.wall)}   (wall clock, incl. start-up)`);
  const mmdebstrap = cold.toolSeconds.mmdebstrap;
  const own = cold.wall - mmdebstrap - cold.toolSeconds.zstd;
  console.log(`\nmmdebstrap ${fmt(mmdebstrap)}, zstd ${fmt(cold.toolSeconds.zstd)}, pi-image's own ${fmt(own)} (cold build)`);
  console.log(`warm rebuild / cold build            = ${(warm.wall / cold.wall).toFixed(3)}  (target <= 0.15)`);
  console.log(`pi-image own overhead / mmdebstrap   = ${(own / mmdebstrap).toFixed(3)}  (target <= 0.20)`);
  console.log(`host: ${execFileSync('nproc').toString().trim()} cores`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
