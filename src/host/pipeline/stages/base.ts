import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostToolMissingError } from '../../errors.js';
import type { Reporter } from '../../progress.js';
import { fetchReleaseDate, newestReleaseDate, runMmdebstrap } from '../../tools/mmdebstrap.js';
import type { ImportedBase, Plan } from '../../plan/plan.js';
import { drain, readAll, readTar } from '../rootfs-tar.js';

export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export interface InstalledPackage {
  name: string;
  version: string;
  architecture: string;
}

export interface BaseMeta extends RootfsDescription {
  mmdebstrapSeconds: number;
  /** The newest Release date of the Debian archive the base came from (absent in bases cached before it was recorded). */
  releaseDate?: number;
  /** Set when the base is an existing disk image. */
  imported?: ImportedBase;
}

export interface RootfsDescription {
  packages: InstalledPackage[];
  /** Newest file time in the rootfs: the default SOURCE_DATE_EPOCH, derived from the inputs. */
  newestMtime: number;
  /** Timer units the base system ships (file or symlink, not templates). */
  timers: string[];
}

const TIMER_UNIT = /^(?:usr\/lib|lib|etc)\/systemd\/system\/([^/@]+\.timer)$/;

/** Installed packages from dpkg's status file. */
export function parseDpkgStatus(text: string): InstalledPackage[] {
  const packages: InstalledPackage[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const status = field('Status');
    const name = field('Package');
    if (!name || !status?.endsWith(' installed')) continue;
    packages.push({ name, version: field('Version') ?? '', architecture: field('Architecture') ?? '' });
  }
  return packages.sort((a, b) => a.name.localeCompare(b.name) || a.architecture.localeCompare(b.architecture));
}

export async function runBaseStage(opts: {
  plan: Plan;
  outDir: string;
  reporter: Reporter;
  signal?: AbortSignal;
  root: boolean;
}): Promise<BaseMeta> {
  const tarPath = join(opts.outDir, 'rootfs.tar');
  const started = Date.now();
  const keyringDir = opts.plan.base.keyrings.length ? await stageKeyrings(opts.plan.base.keyrings, join(opts.outDir, 'keyrings')) : undefined;
  const releaseDatesFile = join(opts.outDir, 'release-dates');
  // Known before the build, the archive's date stamps what the build makes (the initramfs, dpkg's files).
  const sourceDateEpoch = opts.plan.sourceDateEpoch.value ?? (await fetchReleaseDate(opts.plan.base, opts.signal));
  await runMmdebstrap(opts.plan.base, tarPath, { root: opts.root, reporter: opts.reporter, signal: opts.signal, keyringDir, releaseDatesFile, sourceDateEpoch });
  if (keyringDir) await rm(keyringDir, { recursive: true, force: true });
  const mmdebstrapSeconds = (Date.now() - started) / 1000;
  const releaseDate = newestReleaseDate(await readFile(releaseDatesFile, 'utf8').catch(() => ''));
  await rm(releaseDatesFile, { force: true });
  const meta: BaseMeta = { ...(await describeRootfs(tarPath, opts.reporter)), mmdebstrapSeconds, releaseDate };
  await writeFile(join(opts.outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}

/** A folder apt can trust while building: Debian's archive key plus the extra sources' keyrings. */
export async function stageKeyrings(keyrings: Plan['base']['keyrings'], dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await copyFile(DEBIAN_KEYRING, join(dir, 'debian-archive-keyring.gpg')).catch(() => {
    throw new HostToolMissingError([{ name: `Debian's archive keyring (${DEBIAN_KEYRING})`, fix: 'apt-get install -y debian-archive-keyring' }]);
  });
  for (const k of keyrings) await copyFile(k.path, join(dir, k.name));
  return dir;
}

/** Installed packages, timer units and the newest file time of a rootfs tarball. */
export async function describeRootfs(tarPath: string, reporter: Reporter): Promise<RootfsDescription> {
  let packages: InstalledPackage[] = [];
  let newestMtime = 0;
  const timers = new Set<string>();
  reporter.emit({ type: 'stage-progress', stage: 'base', detail: 'reading the package list' });
  for await (const { header, name, body } of readTar(tarPath)) {
    newestMtime = Math.max(newestMtime, Math.floor((header.mtime?.getTime() ?? 0) / 1000));
    const timer = TIMER_UNIT.exec(name)?.[1];
    if (timer) timers.add(timer);
    if (name === 'var/lib/dpkg/status') packages = parseDpkgStatus((await readAll(body)).toString('utf8'));
    else await drain(body);
  }
  return { packages, newestMtime, timers: [...timers].sort() };
}
