import { copyFile, lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Reporter } from '../progress.js';
import { runTool } from './run.js';

/**
 * Mounts that must all be undone: the stack is unwound in reverse, lazily if a mount
 * is still busy, so a failed import never leaves a mount behind.
 */
export class MountStack {
  private mounted: string[] = [];

  constructor(
    private readonly stage: string,
    private readonly reporter: Reporter,
  ) {}

  async mount(args: string[], target: string): Promise<void> {
    await mkdir(target, { recursive: true });
    await runTool('mount', [...args, target], { stage: this.stage, reporter: this.reporter });
    this.mounted.push(target);
  }

  /** A partition of a disk image file, through a loop device. */
  async mountPartition(image: string, offset: number, size: number, target: string, fstype: string): Promise<void> {
    await this.mount(['-t', fstype, '-o', `loop,offset=${offset},sizelimit=${size}`, image], target);
  }

  async unmount(target: string): Promise<void> {
    const at = this.mounted.lastIndexOf(target);
    if (at < 0) return;
    this.mounted.splice(at, 1);
    await runTool('umount', ['--recursive', target], { stage: this.stage, reporter: this.reporter }).catch(() =>
      runTool('umount', ['--recursive', '--lazy', target], { stage: this.stage, reporter: this.reporter }),
    );
  }

  async unwind(): Promise<void> {
    for (const target of [...this.mounted].reverse()) await this.unmount(target);
  }
}

/**
 * Runs commands inside a rootfs (arm64 through qemu-user/binfmt on other hosts), with
 * /proc, /sys and /dev bound, the host's DNS, and services kept from starting.
 */
export async function withChroot<T>(root: string, mounts: MountStack, fn: (run: (args: string[], env?: Record<string, string>) => Promise<string>) => Promise<T>, opts: { stage: string; reporter: Reporter; signal?: AbortSignal }): Promise<T> {
  await mounts.mount(['-t', 'proc', 'proc'], join(root, 'proc'));
  await mounts.mount(['--make-rslave', '--rbind', '/sys'], join(root, 'sys'));
  await mounts.mount(['--make-rslave', '--rbind', '/dev'], join(root, 'dev'));
  const policy = join(root, 'usr/sbin/policy-rc.d');
  const resolv = join(root, 'etc/resolv.conf');
  const savedResolv = join(root, 'etc/resolv.conf.pi-image-saved');
  // The image's resolv.conf is often a symlink into /run: set it aside as it is, use the host's.
  const hadResolv = await lstat(resolv).then(() => true, () => false);
  if (hadResolv) await rename(resolv, savedResolv);
  await copyFile('/etc/resolv.conf', resolv).catch(() => writeFile(resolv, ''));
  await writeFile(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    return await fn((args, env) =>
      runTool('chroot', [root, ...args], { stage: opts.stage, reporter: opts.reporter, signal: opts.signal, env: { DEBIAN_FRONTEND: 'noninteractive', PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env } }),
    );
  } finally {
    await rm(policy, { force: true });
    await rm(resolv, { force: true });
    if (hadResolv) await rename(savedResolv, resolv);
    await mounts.unmount(join(root, 'dev'));
    await mounts.unmount(join(root, 'sys'));
    await mounts.unmount(join(root, 'proc'));
  }
}
