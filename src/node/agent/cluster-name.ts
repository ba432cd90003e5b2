import { lanAddresses, sameSubnet } from '../identity.js';
import { publishClusterName } from './mdns.js';

/** `<cluster>.local` → this root's address on the LAN its workers are on (not, say, a second NIC elsewhere). */
export class ClusterName {
  private published?: string;
  private mdns?: { close(): void };

  constructor(
    private readonly cluster: string,
    private readonly log: (line: string) => void,
  ) {}

  publish(toward: string | undefined): void {
    const own = lanAddresses();
    const facing = toward ? own.find((a) => sameSubnet(a.address, toward, a.netmask)) : undefined;
    const address = facing?.address ?? own[0]?.address;
    if (!address || address === this.published) return;
    this.published = address;
    this.mdns?.close();
    this.mdns = publishClusterName(this.cluster, address, this.log);
  }

  close(): void {
    this.mdns?.close();
    this.mdns = undefined;
    this.published = undefined;
  }
}
