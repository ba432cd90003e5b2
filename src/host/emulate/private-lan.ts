import { PiImageError } from '../errors.js';
import { silentReporter } from '../progress.js';
import { runTool } from '../tools/run.js';

const ip = (args: string[]) => runTool('ip', args, { stage: 'emulate', reporter: silentReporter });

/**
 * A virtual LAN that never touches the host's network: a network namespace with a bridge
 * and one tap per VM; each QEMU runs inside the namespace. Removing the namespace removes
 * everything. Needs root (CAP_NET_ADMIN).
 */
export class PrivateLan {
  readonly namespace: string;
  private taps = 0;

  private constructor(namespace: string) {
    this.namespace = namespace;
  }

  static async create(name = `pi-image-lan-${process.pid}`): Promise<PrivateLan> {
    if (process.getuid?.() !== 0) {
      throw new PiImageError('the emulated LAN needs root (a network namespace with a bridge and taps)', 'run as root (sudo); a rootless LAN over VDE is not built yet');
    }
    await ip(['netns', 'add', name]);
    const lan = new PrivateLan(name);
    try {
      await lan.exec(['ip', 'link', 'set', 'lo', 'up']);
      await lan.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge']);
      await lan.exec(['ip', 'link', 'set', 'br0', 'up']);
    } catch (e) {
      await lan.destroy();
      throw e;
    }
    return lan;
  }

  private exec(command: string[]): Promise<string> {
    return ip(['netns', 'exec', this.namespace, ...command]);
  }

  /** Prefix that runs a command (QEMU) inside the namespace. */
  get wrapper(): string[] {
    return ['ip', 'netns', 'exec', this.namespace];
  }

  /** A new tap on the bridge, and the QEMU arguments of a NIC on it (stable MAC per node). */
  async addNode(index: number): Promise<string[]> {
    const tap = `tap${this.taps++}`;
    await this.exec(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await this.exec(['ip', 'link', 'set', tap, 'master', 'br0']);
    await this.exec(['ip', 'link', 'set', tap, 'up']);
    const mac = `52:54:00:a1:00:${(index + 1).toString(16).padStart(2, '0')}`;
    return ['-netdev', `tap,id=lan,ifname=${tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=lan,mac=${mac}`];
  }

  async destroy(): Promise<void> {
    // Best effort: the namespace may be gone already.
    await ip(['netns', 'del', this.namespace]).catch(() => undefined);
  }
}

/** A second NIC for one VM: QEMU's user network, restricted (no way out), forwarding ports ([host, guest] pairs) from the host's loopback. */
export function forwardedPortArgs(ports: [number, number][], index = 0): string[] {
  // Its own MAC per node: with QEMU's default one, every node's mDNS daemon saw the same address twice.
  const mac = `52:54:00:b2:00:${(index + 1).toString(16).padStart(2, '0')}`;
  return ['-netdev', `user,id=fwd,restrict=on,${ports.map(([host, guest]) => `hostfwd=tcp:127.0.0.1:${host}-:${guest}`).join(',')}`, '-device', `virtio-net-pci,netdev=fwd,mac=${mac}`];
}
