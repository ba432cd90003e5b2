import { copyFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { extractDirectBootFiles } from '../../src/host/emulate/boot-files.js';
import { QemuVm } from '../../src/host/emulate/qemu-vm.js';

/**
 * Boots a qemu-board image (kernel and initrd from its boot partition) with 4 CPUs like a
 * Pi 5, waits for the test layer's root shell on the serial console and for systemd to
 * settle. `copyTo` boots a copy grown by 1 GiB (a bigger card, so the root must grow);
 * `nic` adds a NIC on a restricted user network (no host access).
 */
export async function bootImage(image: string, opts: { name: string; workDir: string; copyTo?: string; nic?: boolean; hostname?: string }): Promise<QemuVm> {
  let disk = image;
  if (opts.copyTo) {
    disk = opts.copyTo;
    copyFileSync(image, disk);
    truncateSync(disk, statSync(disk).size + 1024 ** 3);
  }
  const boot = await extractDirectBootFiles(disk, join(opts.workDir, `${opts.name}-boot`));
  const vm = new QemuVm({
    image: disk,
    boot,
    name: opts.name,
    cpus: 4,
    netArgs: opts.nic ? ['-netdev', 'user,id=lan,restrict=on', '-device', 'virtio-net-pci,netdev=lan'] : undefined,
  });
  vm.start();
  // First boot renames the node (<cluster>-<id>) before the console logs in.
  await vm.waitFor(opts.hostname ? new RegExp(`root@${opts.hostname}:~# `) : /root@[\w-]+:~# /, 10 * 60_000);
  await vm.check('stty -echo; dmesg -n 1; export PAGER=cat SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 TERM=dumb');
  await vm.run('systemctl is-system-running --wait', 5 * 60_000);
  return vm;
}
