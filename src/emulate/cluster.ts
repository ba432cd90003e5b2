import { copyFile, mkdtemp, rm, truncate, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PiImageError } from '../errors.js';
import { extractDirectBootFiles } from './boot-files.js';
import { forwardedPortArgs, PrivateLan } from './private-lan.js';
import { QemuVm } from './qemu-vm.js';

/** The port the node agent's API front listens on (forwarded to the host's loopback). */
export const NODE_API_PORT = 8080;

export interface EmulatedCluster {
  vms: QemuVm[];
  lan: PrivateLan;
  /** Host ports forwarded to each node's API port, in node order. */
  apiPorts: number[];
  stop(): Promise<void>;
}

/**
 * N nodes booted from one image (each on its own copy, grown like a bigger card) on a private
 * LAN, each also reachable from the host's loopback on one forwarded port. `stop` cuts the
 * power, removes the LAN and the copies.
 */
export async function startCluster(opts: {
  image: string;
  nodes: number;
  cpus?: number;
  memoryMib?: number;
  firstApiPort?: number;
  onOutput?: (node: number, text: string) => void;
}): Promise<EmulatedCluster> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 8) throw new PiImageError(`--nodes must be 1 to 8, not ${opts.nodes}`);
  const st = await stat(opts.image).catch(() => undefined);
  if (!st?.isFile()) throw new PiImageError(`${opts.image} is not an image file`, 'build one with `pi-image build --board qemu`');
  const work = await mkdtemp(join(tmpdir(), 'pi-image-emulate-'));
  const boot = await extractDirectBootFiles(opts.image, join(work, 'boot'));
  const lan = await PrivateLan.create();
  const vms: QemuVm[] = [];
  const apiPorts: number[] = [];
  const stop = async () => {
    await Promise.all(vms.map((vm) => vm.kill()));
    await lan.destroy();
    await rm(work, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < opts.nodes; i++) {
      const disk = join(work, `node${i + 1}.img`);
      await copyFile(opts.image, disk);
      await truncate(disk, st.size + 1024 ** 3);
      const apiPort = (opts.firstApiPort ?? 18080) + i;
      apiPorts.push(apiPort);
      const vm = new QemuVm({
        image: disk,
        boot,
        name: `node${i + 1}`,
        cpus: opts.cpus ?? 2,
        memoryMib: opts.memoryMib ?? 1024,
        wrapper: lan.wrapper,
        // Several emulated nodes share the host's cores: give slow device probing time
        // instead of dropping to emergency mode after systemd's default 90 s.
        append: ['systemd.default_device_timeout_sec=900', 'systemd.default_timeout_start_sec=900'],
        netArgs: [...(await lan.addNode(i)), ...forwardedPortArgs(apiPort, NODE_API_PORT)],
        onOutput: (text) => opts.onOutput?.(i, text),
      });
      vm.start();
      vms.push(vm);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { vms, lan, apiPorts, stop };
}

/** Boot milestones read off a node's console, for progress. */
export const BOOT_MILESTONES: [RegExp, string][] = [
  [/Booting Linux/, 'kernel'],
  [/Run \/init|Loading, please wait/, 'initramfs'],
  [/systemd\[1\]: .*(Detected|Hostname set)|Welcome to/, 'systemd'],
  [/Reached target.*[Mm]ulti-[Uu]ser/, 'multi-user'],
  [/login:|root@[\w-]+:~#/, 'ready'],
];
