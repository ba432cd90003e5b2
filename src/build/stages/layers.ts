import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile, utimes } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import picomatch from 'picomatch';
import * as tar from 'tar-stream';
import { ProfileError } from '../../errors.js';
import type { Reporter } from '../../progress.js';
import { renderTemplate, type Plan } from '../plan.js';
import type { Layer } from '../profiles.js';
import { drain, keptPax, packEntry, readAll, readTar, type TarHeader } from '../rootfs-tar.js';

export const BOOT_MOUNTPOINT = 'boot/firmware';
const BLOCK = 4096;

export interface LayersMeta {
  sourceDateEpoch: number;
  /** Bytes the root filesystem needs for its content, counted in 4 KiB blocks. */
  contentBytes: number;
  inodes: number;
  bootFiles: { path: string; size: number }[];
  bootBytes: number;
}

interface OverlayEntry {
  header: TarHeader;
  content?: Buffer;
}

/** Renders every layer's overlay into tar entries: files with explicit owner, mode and mtime. */
async function renderOverlay(plan: Plan, layers: Layer[], mtime: Date): Promise<Map<string, OverlayEntry>> {
  const entries = new Map<string, OverlayEntry>();
  for (const layer of layers) {
    const planned = plan.layers.find((l) => l.name === layer.name);
    for (const file of layer.overlay) {
      const attrs = planned?.files.find((f) => f.path === file.path);
      const raw = await readFile(file.source);
      const content = file.template ? Buffer.from(renderTemplate(raw.toString('utf8'), plan, `${layer.name}:${file.path}`)) : raw;
      entries.set(file.path, {
        header: { name: file.path, type: 'file', mode: parseInt(attrs?.mode ?? '0644', 8), uid: attrs?.uid ?? 0, gid: attrs?.gid ?? 0, mtime, size: content.length },
        content,
      });
    }
    for (const { unit, wanted_by } of layer.enable) {
      const unitPath = layer.overlay.find((f) => f.path.endsWith(`/systemd/system/${unit}`))?.path as string;
      const link = `etc/systemd/system/${wanted_by}.wants/${unit}`;
      entries.set(link, { header: { name: link, type: 'symlink', linkname: `/${unitPath}`, mode: 0o777, uid: 0, gid: 0, mtime } });
    }
  }
  return entries;
}

function parentsOf(path: string): string[] {
  const parents: string[] = [];
  for (let dir = posix.dirname(path); dir !== '.' && dir !== '/'; dir = posix.dirname(dir)) parents.unshift(dir);
  return parents;
}

/**
 * Streams the base rootfs tar into a new one: removed paths dropped, overlay files
 * replacing or adding, the boot partition's files diverted to `bootDir`. Nothing is
 * extracted to disk except the (small) boot files.
 */
export async function runLayersStage(opts: {
  plan: Plan;
  layers: Layer[];
  baseTar: string;
  sourceDateEpoch: number;
  outDir: string;
  reporter: Reporter;
}): Promise<LayersMeta> {
  const { plan, outDir, reporter, sourceDateEpoch } = opts;
  const mtime = new Date(sourceDateEpoch * 1000);
  const overlay = await renderOverlay(plan, opts.layers, mtime);
  const removeMatchers = plan.layers.flatMap((l) => l.remove).map((g) => picomatch(g, { dot: true }));
  const copyRules = plan.boot.copy.map((rule) => ({ ...rule, match: picomatch(rule.from, { dot: true }), hits: 0 }));
  const bootDir = join(outDir, 'boot');
  await mkdir(bootDir, { recursive: true });

  const pack = tar.pack();
  const written = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(join(outDir, 'rootfs.tar')));
  const dirs = new Set<string>();
  const dropped = new Set<string>();
  const bootFiles = new Map<string, number>();
  let contentBytes = 0;
  let inodes = 0;

  const emit = async (header: TarHeader, body?: NodeJS.ReadableStream | Buffer) => {
    inodes += header.type === 'link' ? 0 : 1;
    contentBytes += header.type === 'directory' ? BLOCK : Math.ceil((header.size ?? 0) / BLOCK) * BLOCK;
    if (header.type === 'directory') dirs.add(header.name);
    await packEntry(pack, header, body);
  };

  const writeBootFile = async (target: string, content: Buffer) => {
    const dest = join(bootDir, target);
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, content);
    await utimes(dest, mtime, mtime);
    bootFiles.set(posix.normalize(target), content.length);
  };

  for await (const { header, name, body } of readTar(opts.baseTar, (f) =>
    reporter.emit({ type: 'stage-progress', stage: 'layers', fraction: f * 0.95, detail: 'merging layers into the rootfs' }),
  )) {
    if (name === '') {
      await drain(body);
      continue;
    }
    if (overlay.has(name) || removeMatchers.some((m) => m(name))) {
      dropped.add(name);
      await drain(body);
      continue;
    }
    if (header.type === 'link' && dropped.has(normalizeLink(header.linkname))) {
      await drain(body);
      continue;
    }
    if (name.startsWith(`${BOOT_MOUNTPOINT}/`)) {
      // The boot partition's content: it lives on the FAT partition, not in the ext4 root.
      if (header.type === 'file') await writeBootFile(name.slice(BOOT_MOUNTPOINT.length + 1), await readAll(body));
      else await drain(body);
      continue;
    }
    const out: TarHeader = {
      ...header,
      name,
      linkname: header.type === 'link' ? normalizeLink(header.linkname) : header.linkname,
      mtime: header.mtime && header.mtime.getTime() > mtime.getTime() ? mtime : header.mtime,
      pax: keptPax(header.pax as Record<string, string> | undefined),
    };
    const rule = header.type === 'file' ? copyRules.find((r) => r.match(name)) : undefined;
    if (rule) {
      const content = await readAll(body);
      rule.hits += 1;
      await writeBootFile(rule.many ? posix.join(rule.to, posix.basename(name)) : rule.to, content);
      await emit(out, content);
    } else {
      await emit(out, header.type === 'file' || header.type === 'contiguous-file' ? body : (await drain(body), undefined));
    }
  }

  for (const rule of copyRules) {
    if (rule.hits === 0 || (!rule.many && rule.hits > 1)) {
      throw new ProfileError(
        `board ${plan.board.name}: boot file rule "${rule.from}" matched ${rule.hits} files in the rootfs; ${rule.many ? 'at least one' : 'exactly one'} expected`,
        'check the board profile packages (e.g. the kernel package) and its boot.copy rules',
      );
    }
  }
  if (plan.boot.configTxt) await writeBootFile('config.txt', Buffer.from(plan.boot.configTxt));
  await writeBootFile('cmdline.txt', Buffer.from(plan.boot.cmdline));

  const ensureDir = async (dir: string) => {
    if (dirs.has(dir)) return;
    await emit({ name: dir, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime });
  };
  await ensureDir('boot');
  await ensureDir(BOOT_MOUNTPOINT);
  for (const [path, entry] of [...overlay.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    for (const parent of parentsOf(path)) await ensureDir(parent);
    await emit(entry.header, entry.content);
  }
  pack.finalize();
  await written;

  const files = [...bootFiles].map(([path, size]) => ({ path, size })).sort((a, b) => a.path.localeCompare(b.path));
  const bootBytes = files.reduce((sum, f) => sum + f.size, 0);
  if (bootBytes > plan.boot.partitionMib * 1024 * 1024 * 0.95) {
    throw new ProfileError(`the boot partition's files (${Math.ceil(bootBytes / 1048576)} MiB) do not fit its ${plan.boot.partitionMib} MiB`);
  }
  const meta: LayersMeta = { sourceDateEpoch, contentBytes, inodes, bootFiles: files, bootBytes };
  await writeFile(join(outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  reporter.emit({ type: 'stage-progress', stage: 'layers', fraction: 1, detail: 'rootfs written' });
  return meta;
}

function normalizeLink(linkname: string | undefined): string {
  return (linkname ?? '').replace(/^\.?\/+/, '');
}
