import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile, utimes } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import picomatch from 'picomatch';
import * as tar from 'tar-stream';
import { PiImageError, ProfileError } from '../../errors.js';
import type { Reporter } from '../../progress.js';
import { renderTemplate, type Plan } from '../../plan/plan.js';
import type { Layer } from '../../catalog/layers.js';
import { drain, keptPax, packEntry, readAll, readTar, type TarHeader } from '../rootfs-tar.js';
import { renderTuning } from '../../tuning/render.js';
import { AUTHORIZED_KEYS_PATH, inRootfs, MODEL_CURRENT, MODEL_INFO, modelVersionDir, NODE_SETTINGS_PATH, RUNTIME_CURRENT, RUNTIME_INFO, runtimeVersionDir } from '../../../shared/node-paths.js';
import { EEPROM_FIRMWARE_GLOB } from '../../firmware/bootloader-plan.js';
import { eepromSignature, readEepromFile, replaceEepromFile, setBootconfKeys } from '../../firmware/eeprom.js';

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
  /** A file streamed from the build machine (a model may be many GiB). */
  source?: string;
}

/** The node agent's settings, the login user's keys and the files the config brings (model, engine binaries). */
function nodeEntries(plan: Plan, mtime: Date): [string, OverlayEntry][] {
  const file = (name: string, content: Buffer, mode = 0o644): [string, OverlayEntry] => [name, { header: { name, type: 'file', mode, uid: 0, gid: 0, mtime, size: content.length }, content }];
  return [
    file(inRootfs(NODE_SETTINGS_PATH), Buffer.from(`${JSON.stringify(plan.node.settings, null, 2)}\n`)),
    file(inRootfs(AUTHORIZED_KEYS_PATH), Buffer.from(plan.node.authorizedKeys)),
    ...plan.node.files.map((f): [string, OverlayEntry] => [f.target, { header: { name: f.target, type: 'file', mode: f.mode, uid: 0, gid: 0, mtime, size: f.size }, source: f.source }]),
  ];
}

/**
 * Time zone, locale and time servers: the files timedatectl and localectl would write. The locale lives in
 * /etc/locale.conf; Debian's tmpfiles.d (debian.conf) turns /etc/default/locale into a link
 * to it at every boot, replacing a file written there.
 */
function systemEntries(plan: Plan, mtime: Date): [string, OverlayEntry][] {
  const file = (name: string, text: string): [string, OverlayEntry] => [name, { header: { name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime, size: Buffer.byteLength(text) }, content: Buffer.from(text) }];
  const link = (name: string, linkname: string): [string, OverlayEntry] => [name, { header: { name, type: 'symlink', linkname, mode: 0o777, uid: 0, gid: 0, mtime } }];
  return [
    file('etc/timezone', `${plan.system.timezone}\n`),
    link('etc/localtime', `/usr/share/zoneinfo/${plan.system.timezone}`),
    file('etc/locale.conf', `LANG=${plan.system.locale}\n`),
    link('etc/default/locale', '../locale.conf'),
    // A vendor drop-in: an admin's /etc/systemd/timesyncd.conf.d still wins.
    ...(plan.system.ntpServers.length ? [file('usr/lib/systemd/timesyncd.conf.d/pi-image.conf', `[Time]\nNTP=${plan.system.ntpServers.join(' ')}\n`)] : []),
  ];
}

/** The first runtime's and model's descriptions and the `current` links to them: an image's node looks like an updated one. */
function versionedEntries(plan: Plan, mtime: Date): [string, OverlayEntry][] {
  const entries = (described: { version: string } | undefined, dir: string, infoName: string, current: string): [string, OverlayEntry][] => {
    if (!described) return [];
    const info = Buffer.from(`${JSON.stringify(described, null, 2)}\n`);
    const infoPath = `${inRootfs(dir)}/${infoName}`;
    const link = inRootfs(current);
    return [
      [infoPath, { header: { name: infoPath, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime, size: info.length }, content: info }],
      [link, { header: { name: link, type: 'symlink', linkname: `versions/${described.version}`, mode: 0o777, uid: 0, gid: 0, mtime } }],
    ];
  };
  const { runtime, modelInfo } = plan.node;
  return [
    ...entries(runtime, runtime ? runtimeVersionDir(runtime.version) : '', RUNTIME_INFO, RUNTIME_CURRENT),
    ...entries(modelInfo, modelInfo ? modelVersionDir(modelInfo.version) : '', MODEL_INFO, MODEL_CURRENT),
  ];
}

/** Renders every layer's overlay into tar entries: files with explicit owner, mode and mtime. */
async function renderOverlay(plan: Plan, layers: readonly Layer[], mtime: Date): Promise<Map<string, OverlayEntry>> {
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
    for (const unit of layer.mask) {
      const link = `etc/systemd/system/${unit}`;
      entries.set(link, { header: { name: link, type: 'symlink', linkname: '/dev/null', mode: 0o777, uid: 0, gid: 0, mtime } });
    }
  }
  return entries;
}

/**
 * Where a base tar entry under boot/firmware/ goes in the boot folder. Its name comes from
 * the base (mmdebstrap's or an imported image's tarball): one that climbs out with `..`
 * would be written anywhere on the build machine, as root, so it is refused.
 */
function bootPartitionPath(name: string): string {
  const target = name.slice(BOOT_MOUNTPOINT.length + 1);
  if (target.split('/').includes('..')) {
    throw new PiImageError(
      `base rootfs tarball: entry "${name}" would be written outside the boot partition (its name climbs out of ${BOOT_MOUNTPOINT}/ with "..")`,
      `a base's boot files must be paths inside ${BOOT_MOUNTPOINT}/ without ".."; check where the base comes from (base.image, the board's packages and apt sources), then build again`,
    );
  }
  return target;
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
  layers: readonly Layer[];
  baseTar: string;
  /** Timer units of the base system (what the quiet-node lever masks). */
  timers: string[];
  sourceDateEpoch: number;
  outDir: string;
  reporter: Reporter;
  /** The engine stage's binaries (engine compiled from source): installed where the engine unit runs them. */
  engineBinaries?: { dir: string; files: readonly { name: string; size: number }[] };
}): Promise<LayersMeta> {
  const { plan, outDir, reporter, sourceDateEpoch } = opts;
  const mtime = new Date(sourceDateEpoch * 1000);
  const overlay = await renderOverlay(plan, opts.layers, mtime);
  for (const g of renderTuning({ profile: plan.tuning.profile, board: plan.board.name, levers: [...plan.tuning.levers], timers: opts.timers })) {
    if (overlay.has(g.path)) throw new ProfileError(`${g.path} is both generated by the tuning profile and shipped by a layer's overlay`);
    const header: TarHeader = g.symlinkTo
      ? { name: g.path, type: 'symlink', linkname: g.symlinkTo, mode: 0o777, uid: 0, gid: 0, mtime }
      : { name: g.path, type: 'file', mode: g.mode ?? 0o644, uid: 0, gid: 0, mtime, size: Buffer.byteLength(g.content ?? '') };
    overlay.set(g.path, { header, content: g.symlinkTo ? undefined : Buffer.from(g.content ?? '') });
  }
  const runtime = plan.node.runtime;
  const engineEntries = (opts.engineBinaries?.files ?? []).map(({ name, size }): [string, OverlayEntry] => {
    const target = `${inRootfs(runtimeVersionDir(runtime?.version as string))}/${name}`;
    return [target, { header: { name: target, type: 'file', mode: 0o755, uid: 0, gid: 0, mtime, size }, source: join(opts.engineBinaries?.dir as string, name) }];
  });
  for (const [path, entry] of [...nodeEntries(plan, mtime), ...systemEntries(plan, mtime), ...engineEntries, ...versionedEntries(plan, mtime)]) {
    if (overlay.has(path)) throw new ProfileError(`${path} is both written from pi-image.yaml and shipped by a layer's overlay`);
    overlay.set(path, entry);
  }
  const removeMatchers = plan.layers.flatMap((l) => l.remove).map((g) => picomatch(g, { dot: true }));
  const copyRules = plan.boot.copy.map((rule) => ({ ...rule, match: picomatch(rule.from, { dot: true }), hits: 0 }));
  const bootDir = join(outDir, 'boot');
  await mkdir(bootDir, { recursive: true });

  const pack = tar.pack();
  const written = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(join(outDir, 'rootfs.tar')));
  const dirs = new Set<string>();
  const dropped = new Set<string>();
  const wantsEeprom = Object.keys(plan.bootloader.settings).length > 0;
  const eepromFirmware = new Map<string, Buffer>(); // rpi-eeprom's files in the base, by path
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
      const target = bootPartitionPath(name);
      if (header.type === 'file') await writeBootFile(target, await readAll(body));
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
    if (wantsEeprom && header.type === 'file' && EEPROM_FIRMWARE_GLOB.test(name)) {
      const content = await readAll(body);
      eepromFirmware.set(name, content);
      await emit(out, content);
      continue;
    }
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
  if (wantsEeprom) {
    for (const [name, content] of Object.entries(await bootloaderUpdate(plan, eepromFirmware, sourceDateEpoch))) await writeBootFile(name, content);
  }
  await writeBootFile('cmdline.txt', Buffer.from(plan.boot.cmdline));

  const ensureDir = async (dir: string) => {
    if (dirs.has(dir)) return;
    await emit({ name: dir, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime });
  };
  await ensureDir('boot');
  await ensureDir(BOOT_MOUNTPOINT);
  for (const [path, entry] of [...overlay.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    for (const parent of parentsOf(path)) await ensureDir(parent);
    await emit(entry.header, entry.source ? createReadStream(entry.source) : entry.content);
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

/** pieeprom.upd (with the plan's bootconf.txt settings), pieeprom.sig and recovery.bin: the bootloader flashes itself at next boot. */
async function bootloaderUpdate(plan: Plan, fromBase: Map<string, Buffer>, sourceDateEpoch: number): Promise<Record<string, Buffer>> {
  const pick = (file: RegExp) =>
    [...fromBase.keys()].filter((p) => file.test(posix.basename(p))).sort((a, b) => Number(a.includes('/latest/')) - Number(b.includes('/latest/')) || b.localeCompare(a))[0];
  const basePieeprom = pick(/^pieeprom-/);
  const baseRecovery = basePieeprom ? [...fromBase.keys()].find((p) => p === posix.join(posix.dirname(basePieeprom), 'recovery.bin')) : undefined;
  const image = plan.bootloader.image ? await readFile(plan.bootloader.image.path) : basePieeprom ? fromBase.get(basePieeprom) : undefined;
  const recovery = plan.bootloader.recovery ? await readFile(plan.bootloader.recovery.path) : baseRecovery ? fromBase.get(baseRecovery) : undefined;
  const asked = Object.entries(plan.bootloader.settings).map(([k, v]) => `${k}=${v}`).join(' ');
  if (!image || !recovery) {
    throw new ProfileError(
      `the build asks for bootloader settings (${asked}) but no Raspberry Pi 5 bootloader image ${image ? 'recovery.bin ' : ''}is available`,
      [
        'pi-image starts from the pieeprom-*.bin and recovery.bin of Raspberry Pi\'s rpi-eeprom package (firmware-2712/):',
        '- build from the official Raspberry Pi OS image (base: { image: … }), which has rpi-eeprom installed, or',
        '- add Raspberry Pi\'s archive to apt.extra_sources and rpi-eeprom to packages, or',
        '- set bootloader: { image: …/pieeprom-YYYY-MM-DD.bin, recovery: …/recovery.bin } in pi-image.yaml, or',
        '- leave the bootloader alone: tuning: { sdram_banklow: false } (and no bootloader: settings)',
      ].join('\n'),
    );
  }
  const config = setBootconfKeys(readEepromFile(image).toString('utf8'), plan.bootloader.settings);
  const updated = replaceEepromFile(image, Buffer.from(config));
  return { 'pieeprom.upd': updated, 'pieeprom.sig': Buffer.from(eepromSignature(updated, sourceDateEpoch)), 'recovery.bin': recovery };
}

function normalizeLink(linkname: string | undefined): string {
  return (linkname ?? '').replace(/^\.?\/+/, '');
}
