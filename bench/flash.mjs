// See bench/flash. Prints each way's time and its ratio to writing every byte.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repo = join(import.meta.dirname, '..');
const cli = process.env.PI_IMAGE_CLI ?? join(repo, 'dist/host/cli/main.js');
const sizeMiB = Number(process.env.BENCH_IMAGE_MIB ?? 1024);
const work = mkdtempSync(join(tmpdir(), 'pi-image-flash-bench-'));
const image = join(work, 'bench.img');
const target = join(work, 'target.img');
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], ...opts });

function time(label, cmd, args) {
  rmSync(target, { force: true });
  run('sync', []);
  process.stderr.write(`bench: ${label}…\n`);
  const started = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (r.status !== 0) throw new Error(`${label} failed:\n${r.stderr}`);
  run('cmp', [image, target]);
  return { label, seconds };
}

try {
  // A card-like image: partition table, a FAT-sized region with some data, an ext4-sized region ~10 % full.
  run('truncate', ['-s', `${sizeMiB}M`, image]);
  run('sfdisk', ['-q', image], { stdio: ['pipe', 'ignore', 'inherit'], input: 'label: dos\nstart=16384, size=131072, type=c\nstart=147456, type=83\n' });
  run('dd', ['if=/dev/urandom', `of=${image}`, 'bs=1M', 'seek=8', 'count=4', 'conv=notrunc', 'status=none']);
  for (let at = 80; at < sizeMiB; at += 40) run('dd', ['if=/dev/urandom', `of=${image}`, 'bs=1M', `seek=${at}`, 'count=5', 'conv=notrunc', 'status=none']);
  run('bmaptool', ['create', '-o', join(work, 'bench.bmap'), image]);
  run('zstd', ['-q', '-T0', image, '-o', `${image}.zst`]);
  const mapped = Number(/<MappedBlocksCount>\s*(\d+)/.exec(execFileSync('cat', [join(work, 'bench.bmap')], { encoding: 'utf8' }))[1]) * 4096;

  const results = [
    time('every byte (pi-image flash --no-bmap --no-verify)', process.execPath, [cli, 'flash', '--no-bmap', '--no-verify', '--json', image, target]),
    time('bmap (pi-image flash --no-verify)', process.execPath, [cli, 'flash', '--no-verify', '--json', image, target]),
    time('bmap + read-back verify (pi-image flash)', process.execPath, [cli, 'flash', '--json', image, target]),
    time('bmap, from .zst (pi-image flash)', process.execPath, [cli, 'flash', '--json', `${image}.zst`, target]),
    time("bmaptool copy (Debian's, checks source checksums)", 'bmaptool', ['copy', '--bmap', join(work, 'bench.bmap'), image, target]),
  ];
  const baseline = results[0].seconds;
  console.log(`image ${sizeMiB} MiB, mapped ${(mapped / 1048576).toFixed(1)} MiB (${((100 * mapped) / (sizeMiB * 1048576)).toFixed(1)} %), target: a file on ${execFileSync('df', ['--output=fstype', work], { encoding: 'utf8' }).split('\n')[1]}`);
  for (const r of results) console.log(`${r.label.padEnd(52)} ${r.seconds.toFixed(2).padStart(7)}s   ratio to every byte ${(r.seconds / baseline).toFixed(3)}`);
  const bmaptool = results[4].seconds;
  console.log(`pi-image flash (bmap, no verify) / bmaptool copy = ${(results[1].seconds / bmaptool).toFixed(3)}`);
  console.log(`host: ${execFileSync('nproc').toString().trim()} cores`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
