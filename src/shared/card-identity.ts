import { isIPv4 } from './ipv4.js';

/**
 * What makes one card a particular node without rebuilding the image: written by
 * `pi-image flash --node` (or by Raspberry Pi Imager's cloud-init customisation) onto the
 * boot partition, applied by the node's first boot. The file formats live where they are
 * written (host) and read (node); the rules for the values live here, for both.
 */
export interface CardIdentity {
  hostname?: string;
  /** Overrides the role the image was built for. */
  role?: 'root' | 'worker';
  /** Public keys for the login user, added to those baked into the image. */
  sshKeys: string[];
  network?: StaticAddress;
}

export interface StaticAddress {
  /** The wired link: an interface name (eth0 on Raspberry Pi OS) or its MAC address. */
  link: string;
  /** IPv4 address with its prefix length, e.g. 192.168.1.21/24. */
  address: string;
  gateway?: string;
  dns: string[];
}

/** The node file's own shape (pi-image/node.json on the boot partition). */
export interface NodeFile {
  version: 1;
  name?: string;
  role?: 'root' | 'worker';
}

/** A host name as DNS and mDNS take it: one label of letters, digits and inner hyphens. */
export const isHostname = (s: unknown): s is string => typeof s === 'string' && /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(s);

export const isCidr = (s: unknown): s is string => {
  if (typeof s !== 'string') return false;
  const [ip, prefix, ...rest] = s.split('/');
  return rest.length === 0 && isIPv4(ip) && prefix !== undefined && /^(3[0-2]|[12]?\d)$/.test(prefix) && Number(prefix) >= 1;
};

export const isMacAddress = (s: unknown): s is string => typeof s === 'string' && /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s);

/** A Linux interface name (at most 15 characters, no slash or white space), or a MAC address. */
export const isLink = (s: unknown): s is string => isMacAddress(s) || (typeof s === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(s));


/** Why a static address is not usable, or undefined. */
export function staticAddressProblem(n: StaticAddress): string | undefined {
  if (!isLink(n.link)) return `${JSON.stringify(n.link)} is neither an interface name nor a MAC address`;
  if (!isCidr(n.address)) return `${JSON.stringify(n.address)} is not an IPv4 address with a prefix length (like 192.168.1.21/24)`;
  if (n.gateway !== undefined && !isIPv4(n.gateway)) return `gateway ${JSON.stringify(n.gateway)} is not an IPv4 address`;
  const badDns = n.dns.find((d) => !isIPv4(d));
  if (badDns !== undefined) return `DNS server ${JSON.stringify(badDns)} is not an IPv4 address`;
  return undefined;
}
