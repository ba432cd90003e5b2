import { copyFile, mkdtemp, rm, truncate, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PiImageError } from '../errors.js';
import { extractDirectBootFiles } from './boot-files.js';
import { forwardedPortArgs, PrivateLan } from './private-lan.js';
import { machineArgs, QemuVm } from './qemu-vm.js';
import { boardDtb, dumpMachineDtb, randomBoardSerial } from './board-serial.js';
import { relayIntoNamespace } from './port-relay.js';
import { DEFAULT_API_PORT, OTA_PUSH_PORT } from '../../shared/ports.js';

/** The API port inside each emulated node: images built with the default `cluster.api_port`. */
export const NODE_API_PORT = DEFAULT_API_PORT;

export interface EmulatedCluster {
  /** The running (or last) VM of each node, in node order; replaced when a node is started again. */
  vms: QemuVm[];
  lan: PrivateLan;
  /** Host ports forwarded to each node's API port, in node order. */
  apiPorts: number[];
  /** Host ports forwarded to each node's OTA push port (`pi-image ota --cluster 127.0.0.1:<port>`): each API port + 1000. */
  otaPorts: number[];
  /** Copies of the image each node boots from. */
  disks: string[];
  /** Each node's board serial number, as a Pi's firmware gives it in the device tree. */
  boardSerials: string[];
  /** Powers node i on (again, after it stopped: its disk keeps what the node wrote). */
  startNode(i: number): QemuVm;
  /** A new card in node i's board: a fresh copy of its image (the node must be off). */
  reflashNode(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * N nodes booted from one image (each on its own copy, grown like a bigger card, in a board
 * with its own serial number) on a private LAN, each also reachable from the host's loopback
 * on one forwarded port. `images` gives a node its own image (e.g. one built with another
 * secret); `start: false` leaves every node off until `startNode`. `stop` cuts the power,
 * removes the LAN and the copies.
 */
export async function startCluster(opts: {
  image: string;
  nodes: number;
  images?: Record<number, string>;
  start?: boolean;
  cpus?: number;
  memoryMib?: number;
  firstApiPort?: number;
  /** Extra kernel command line words for every node. */
  append?: string[];
  onOutput?: (node: number, text: string) => void;
}): Promise<EmulatedCluster> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 8) throw new PiImageError(`--nodes must be 1 to 8, not ${opts.nodes}`);
  const imageOf = (i: number) => opts.images?.[i] ?? opts.image;
  for (const image of new Set(Array.from({ length: opts.nodes }, (_, i) => imageOf(i)))) {
    const st = await stat(image).catch(() => undefined);
    if (!st?.isFile()) throw new PiImageError(`${image} is not an image file`, 'build one with `pi-image build --board qemu`');
  }
  const work = await mkdtemp(join(tmpdir(), 'pi-image-emulate-'));
  const lan = await PrivateLan.create();
  const vms: QemuVm[] = [];
  const apiPorts: number[] = [];
  const otaPorts: number[] = [];
  const disks: string[] = [];
  const netArgs: string[][] = [];
  const boots: Awaited<ReturnType<typeof extractDirectBootFiles>>[] = [];
  const boardSerials: string[] = [];
  const machine = { cpus: opts.cpus ?? 2, memoryMib: opts.memoryMib ?? 1024 };
  let relay: Awaited<ReturnType<typeof relayIntoNamespace>> | undefined;
  const stop = async () => {
    await Promise.all(vms.map((vm) => vm.kill()));
    await relay?.close();
    await lan.destroy();
    await rm(work, { recursive: true, force: true });
  };
  const startNode = (i: number) => {
    const vm = new QemuVm({
      image: disks[i] as string,
      boot: boots[i] as Awaited<ReturnType<typeof extractDirectBootFiles>>,
      name: `node${i + 1}`,
      ...machine,
      dtb: join(work, `board${i + 1}.dtb`),
      wrapper: lan.wrapper,
      // Like a board: `reboot` on a node (or an fsck that repaired its root) boots it again.
      allowReboot: true,
      // Several emulated nodes share the host's cores: give slow device probing time
      // instead of dropping to emergency mode after systemd's default 90 s.
      append: ['systemd.default_device_timeout_sec=900', 'systemd.default_timeout_start_sec=900', ...(opts.append ?? [])],
      netArgs: netArgs[i],
      onOutput: (text) => opts.onOutput?.(i, text),
    });
    vm.start();
    vms[i] = vm;
    return vm;
  };
  /** Copies the image onto node i's card, grown like a bigger card, and reads its boot files. */
  const flash = async (i: number) => {
    const disk = join(work, `node${i + 1}.img`);
    await copyFile(imageOf(i), disk);
    await truncate(disk, (await stat(disk)).size + 1024 ** 3);
    disks[i] = disk;
    boots[i] = await extractDirectBootFiles(disk, join(work, `boot${i + 1}`));
  };
  const reflashNode = async (i: number) => {
    const vm = vms[i];
    if (vm && !vm.hasExited) throw new Error(`node${i + 1} is still running: power it off before re-flashing its card`);
    await flash(i);
  };
  try {
    const machineDtb = join(work, 'virt.dtb');
    await dumpMachineDtb(machineArgs(machine), machineDtb);
    for (let i = 0; i < opts.nodes; i++) {
      await flash(i);
      boardSerials.push(randomBoardSerial());
      await boardDtb(machineDtb, boardSerials[i] as string, join(work, `board${i + 1}.dtb`));
      const apiPort = (opts.firstApiPort ?? 18080) + i;
      apiPorts.push(apiPort);
      otaPorts.push(apiPort + 1000);
      netArgs.push([...(await lan.addNode(i)), ...forwardedPortArgs([[apiPort, NODE_API_PORT], [apiPort + 1000, OTA_PUSH_PORT]], i)]);
    }
    relay = await relayIntoNamespace({ wrapper: lan.wrapper, dir: work, ports: [...apiPorts, ...otaPorts] });
    if (opts.start ?? true) for (let i = 0; i < opts.nodes; i++) startNode(i);
  } catch (e) {
    await stop();
    throw e;
  }
  return { vms, lan, apiPorts, otaPorts, disks, boardSerials, startNode, reflashNode, stop };
}

/** Boot milestones read off a node's console, for progress. */
export const BOOT_MILESTONES: [RegExp, string][] = [
  [/Booting Linux/, 'kernel'],
  [/Run \/init|Loading, please wait/, 'initramfs'],
  [/systemd\[1\]: .*(Detected|Hostname set)|Welcome to/, 'systemd'],
  [/Reached target.*[Mm]ulti-[Uu]ser/, 'multi-user'],
  [/login:|root@[\w-]+:~#/, 'ready'],
];
