import { stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Config } from '../../config/config.js';
import { redactConfig } from '../../config/config.js';
import { createBmap } from '../../disk/bmap.js';
import type { Reporter } from '../../progress.js';
import { compressZstd } from '../../tools/zstd.js';
import { sha256OfFile } from '../../../shared/file-hash.js';
import type { Plan } from '../../plan/plan.js';
import type { BaseMeta } from './base.js';
import type { DiskResult } from './disk.js';
import type { LayersMeta } from './layers.js';
import type { EngineBuildMeta } from './engine-build.js';

export interface Manifest {
  tool: Plan['tool'];
  board: Plan['board'];
  role: Plan['role'];
  hostname: string;
  suite: string;
  arch: string;
  source_date_epoch: number;
  packages: BaseMeta['packages'];
  /** The engine compiled from source: version, compiler, flags and the binaries' hashes. */
  engine_build?: EngineBuildMeta;
  layers: { name: string; description: string; files: { path: string; sha256: string; mode: string; uid: number; gid: number }[] }[];
  config: unknown;
  inputs: { cache_keys: Plan['cacheKeys'] };
  disk: {
    id: string;
    size: number;
    partitions: { number: number; label: string; start_sector: number; sectors: number; type: string; partuuid: string }[];
  };
  boot_files: LayersMeta['bootFiles'];
  artifacts: { file: string; size: number; sha256: string }[];
}

/** .img.zst, .bmap, SHA256SUMS and manifest.json next to the .img in the work directory. */
export async function runArtifactsStage(opts: {
  plan: Plan;
  config: Config;
  base: BaseMeta;
  layers: LayersMeta;
  engine?: EngineBuildMeta;
  disk: DiskResult;
  workDir: string;
  reporter: Reporter;
  signal?: AbortSignal;
}): Promise<{ manifest: Manifest; zstdSeconds: number }> {
  const { plan, workDir, reporter } = opts;
  const img = join(workDir, plan.outputs.img);
  const zst = join(workDir, plan.outputs.zst);
  const bmap = join(workDir, plan.outputs.bmap);

  reporter.emit({ type: 'stage-progress', stage: 'artifacts', fraction: 0, detail: 'block map' });
  await createBmap(img, bmap, reporter);
  const zstdStarted = Date.now();
  await compressZstd(img, zst, { level: plan.compressionLevel, stage: 'artifacts', reporter, signal: opts.signal });
  const zstdSeconds = (Date.now() - zstdStarted) / 1000;

  const artifacts: Manifest['artifacts'] = [];
  for (const file of [img, zst, bmap]) {
    reporter.emit({ type: 'stage-progress', stage: 'artifacts', detail: `checksum of ${basename(file)}` });
    artifacts.push({ file: basename(file), size: (await stat(file)).size, sha256: await sha256OfFile(file) });
  }
  await writeFile(join(workDir, plan.outputs.sums), artifacts.map((a) => `${a.sha256}  ${a.file}\n`).join(''));

  const labels = ['bootfs', 'rootfs'];
  const manifest: Manifest = {
    tool: plan.tool,
    board: plan.board,
    role: plan.role,
    hostname: plan.hostname,
    suite: plan.base.suite,
    arch: plan.base.arch,
    source_date_epoch: opts.layers.sourceDateEpoch,
    packages: opts.base.packages,
    ...(opts.engine ? { engine_build: opts.engine } : {}),
    layers: plan.layers.map((l) => ({ name: l.name, description: l.description, files: l.files.map(({ template: _t, ...f }) => f) })),
    config: redactConfig(opts.config),
    inputs: { cache_keys: plan.cacheKeys },
    disk: {
      id: opts.disk.layout.diskId,
      size: opts.disk.layout.totalBytes,
      partitions: opts.disk.table.partitions.map((p, i) => ({
        number: i + 1,
        label: labels[i] ?? '',
        start_sector: p.start,
        sectors: p.size,
        type: p.type,
        partuuid: `${opts.disk.layout.diskId}-${String(i + 1).padStart(2, '0')}`,
      })),
    },
    boot_files: opts.layers.bootFiles,
    artifacts,
  };
  await writeFile(join(workDir, plan.outputs.manifest), `${JSON.stringify(manifest, null, 2)}\n`);
  return { manifest, zstdSeconds };
}
