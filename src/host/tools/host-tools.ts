import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { arch } from 'node:os';
import { delimiter, join } from 'node:path';
import { silentReporter } from '../progress.js';
import { runTool } from './run.js';

export interface HostTool {
  name: string;
  /** Executables that must be on PATH. */
  commands: string[];
  purpose: string;
  neededFor: 'build' | 'test';
  fix: string;
}

const apt = (pkgs: string) => `apt-get install -y ${pkgs}`;

/** Everything the build and the tests call on the host; `doctor --host` checks this list. */
export const HOST_TOOLS: HostTool[] = [
  { name: 'mmdebstrap', commands: ['mmdebstrap'], purpose: 'base rootfs from Debian packages', neededFor: 'build', fix: apt('mmdebstrap') },
  { name: 'qemu-user-static', commands: ['qemu-aarch64-static'], purpose: 'run arm64 maintainer scripts on this host', neededFor: 'build', fix: apt('qemu-user-static binfmt-support') },
  { name: 'e2fsprogs', commands: ['mke2fs'], purpose: 'ext4 root filesystem from a tar stream (needs 1.47.1 or newer)', neededFor: 'build', fix: 'apt-get install -y -t bookworm-backports e2fsprogs   # on Debian 12; Debian 13 and newer: apt-get install -y e2fsprogs' },
  { name: 'dosfstools', commands: ['mkfs.vfat'], purpose: 'FAT32 boot partition', neededFor: 'build', fix: apt('dosfstools') },
  { name: 'mtools', commands: ['mcopy', 'mmd'], purpose: 'copy files into the FAT partition without mounting', neededFor: 'build', fix: apt('mtools') },
  { name: 'fdisk', commands: ['sfdisk'], purpose: 'MBR partition table', neededFor: 'build', fix: apt('fdisk') },
  { name: 'xz-utils', commands: ['xz'], purpose: 'decompress .img.xz base images', neededFor: 'build', fix: apt('xz-utils') },
  { name: 'zstd', commands: ['zstd'], purpose: 'compressed image (.img.zst)', neededFor: 'build', fix: apt('zstd') },
  { name: 'bmap-tools', commands: ['bmaptool'], purpose: 'block map (.bmap) for fast flashing', neededFor: 'build', fix: apt('bmap-tools') },
  { name: 'qemu-system-arm', commands: ['qemu-system-aarch64'], purpose: 'boot images in emulation (tests, emulate)', neededFor: 'test', fix: apt('qemu-system-arm') },
  // Native g++ on an arm64 host; the build stage names whichever is missing when it needs it.
  ...(arch() === 'arm64' ? [] : [{ name: 'g++-aarch64-linux-gnu', commands: ['aarch64-linux-gnu-g++', 'make'], purpose: 'compile dllama for the board from engine.source (builds that use it, tests)', neededFor: 'test' as const, fix: apt('g++-aarch64-linux-gnu make') }]),
  { name: 'device-tree-compiler', commands: ['fdtput'], purpose: "give each emulated board a serial number in QEMU's device tree", neededFor: 'test', fix: apt('device-tree-compiler') },
];

export interface HostCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
  neededFor: 'build' | 'test';
}

async function onPath(command: string, pathVar = process.env.PATH ?? ''): Promise<boolean> {
  for (const dir of pathVar.split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** mke2fs learned to read a tarball with -d in e2fsprogs 1.47.1. */
function mke2fsReadsTar(versionLine: string): boolean {
  const m = /mke2fs (\d+)\.(\d+)(?:\.(\d+))?/.exec(versionLine);
  if (!m) return false;
  const [maj, min, patch] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
  return maj > 1 || (maj === 1 && (min > 47 || (min === 47 && patch >= 1)));
}

export async function checkHost(pathVar = process.env.PATH ?? ''): Promise<HostCheck[]> {
  const checks: HostCheck[] = [];
  for (const tool of HOST_TOOLS) {
    const missing: string[] = [];
    for (const c of tool.commands) if (!(await onPath(c, pathVar))) missing.push(c);
    checks.push({
      name: tool.name,
      ok: missing.length === 0,
      detail: missing.length ? `not found: ${missing.join(', ')} (${tool.purpose})` : tool.purpose,
      fix: missing.length ? tool.fix : undefined,
      neededFor: tool.neededFor,
    });
  }
  const e2fs = checks.find((c) => c.name === 'e2fsprogs');
  if (e2fs?.ok) {
    // mke2fs prints its version on stderr; whatever it printed is judged, even if it failed.
    const printed: string[] = [];
    await runTool('mke2fs', ['-V'], { stage: 'host check', reporter: silentReporter, env: { PATH: pathVar }, onLine: (line) => printed.push(line) }).catch(() => undefined);
    if (!mke2fsReadsTar(printed.join('\n'))) {
      e2fs.ok = false;
      e2fs.detail = `${printed[0] ?? 'mke2fs'} cannot read a tarball (-d); 1.47.1 or newer is needed`;
      e2fs.fix = HOST_TOOLS.find((t) => t.name === 'e2fsprogs')?.fix;
    }
  }
  checks.push(await checkBinfmt());
  return checks;
}

/** arm64 maintainer scripts run through qemu-user: binfmt_misc must have an enabled aarch64 entry. */
async function checkBinfmt(): Promise<HostCheck> {
  const base = { name: 'binfmt aarch64', neededFor: 'build' as const };
  if (arch() === 'arm64') return { ...base, ok: true, detail: 'native arm64 host' };
  const fix =
    'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; update-binfmts --enable qemu-aarch64';
  try {
    const entry = await readFile('/proc/sys/fs/binfmt_misc/qemu-aarch64', 'utf8');
    if (!entry.startsWith('enabled')) return { ...base, ok: false, detail: 'qemu-aarch64 is registered but disabled', fix };
    return { ...base, ok: true, detail: entry.split('\n').find((l) => l.startsWith('interpreter')) ?? 'enabled' };
  } catch {
    return { ...base, ok: false, detail: 'no qemu-aarch64 entry in /proc/sys/fs/binfmt_misc', fix };
  }
}
