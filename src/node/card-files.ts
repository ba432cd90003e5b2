import { parse } from 'yaml';
import { isHostname, staticAddressProblem, type CardIdentity, type StaticAddress } from '../shared/card-identity.js';
import { parsePublicKeyLine } from '../shared/ssh-key.js';

/**
 * Reads one card's identity from its boot partition files: the subset of cloud-init's NoCloud
 * files that makes a node (host name, SSH keys, a static wired address) — so a card customised
 * in Raspberry Pi Imager becomes a node too — and pi-image's own node file (name, role), which
 * wins where both speak. What is ignored is said (`notes`); what is wrong is said (`problems`)
 * and left out, never half-applied.
 */
export interface CardFiles {
  userData?: string;
  networkConfig?: string;
  node?: string;
}

export interface ReadCard {
  identity: CardIdentity;
  notes: string[];
  problems: string[];
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const list = (x: unknown): unknown[] => (Array.isArray(x) ? x : x === undefined || x === null ? [] : [x]);

/** user-data keys this reader applies, or knows to skip on purpose. */
const USER_DATA_APPLIED = new Set(['hostname', 'fqdn', 'users', 'ssh_authorized_keys', 'manage_etc_hosts', 'preserve_hostname']);
const PASSWORD_KEYS = ['password', 'chpasswd', 'ssh_pwauth'];

function yamlOf(text: string, file: string, problems: string[]): unknown {
  try {
    return parse(text);
  } catch (e) {
    problems.push(`${file} is not valid YAML (${(e as Error).message.split('\n')[0]}): ignored`);
    return undefined;
  }
}

function readUserData(text: string, identity: CardIdentity, notes: string[], problems: string[]): void {
  if (!/^#cloud-config\b/.test(text.trimStart()) && text.trim()) {
    problems.push('user-data does not start with #cloud-config (scripts and other cloud-init formats are not run): ignored');
    return;
  }
  const doc = yamlOf(text, 'user-data', problems);
  if (doc === null || doc === undefined) return;
  if (!isObj(doc)) {
    problems.push('user-data is not a cloud-config mapping: ignored');
    return;
  }
  const name = doc.hostname ?? (typeof doc.fqdn === 'string' ? doc.fqdn.split('.')[0] : undefined);
  if (name !== undefined) {
    if (isHostname(name)) identity.hostname = name;
    else problems.push(`user-data hostname ${JSON.stringify(name)} is not a host name (letters, digits, inner hyphens, 63 at most): ignored`);
  }
  const keys = [...list(doc.ssh_authorized_keys)];
  let passwords = PASSWORD_KEYS.some((k) => k in doc);
  for (const user of list(doc.users)) {
    if (!isObj(user)) continue; // "default": the image's login user
    keys.push(...list(user.ssh_authorized_keys));
    if (user.name !== undefined) notes.push(`user-data user ${JSON.stringify(user.name)}: its SSH keys go to this image's login user (a node has one)`);
    if (['passwd', 'plain_text_passwd', 'hashed_passwd'].some((k) => k in user) || user.lock_passwd === false) passwords = true;
  }
  for (const key of keys) {
    const parsed = typeof key === 'string' && !key.includes('\n') ? parsePublicKeyLine(key) : { problem: 'is not one line' };
    if (!('problem' in parsed)) identity.sshKeys.push((key as string).trim());
    else problems.push(`user-data SSH key ${JSON.stringify(String(key).slice(0, 40))}… is not an OpenSSH public key line (it ${parsed.problem}): ignored`);
  }
  if (passwords) notes.push('user-data passwords are not used: nodes take SSH keys only');
  const skipped = Object.keys(doc).filter((k) => !USER_DATA_APPLIED.has(k) && !PASSWORD_KEYS.includes(k));
  if (skipped.length) notes.push(`user-data keys not applied (a node takes host name, SSH keys and a static address): ${skipped.join(', ')}`);
}

function readNetworkConfig(text: string, identity: CardIdentity, notes: string[], problems: string[]): void {
  let doc = yamlOf(text, 'network-config', problems);
  if (doc === null || doc === undefined) return;
  if (isObj(doc) && isObj(doc.network)) doc = doc.network;
  if (!isObj(doc) || doc.version !== 2) {
    problems.push('network-config is not network config version 2 (netplan style, as Raspberry Pi Imager writes it): ignored');
    return;
  }
  if (doc.wifis !== undefined) notes.push('network-config wifis are not used: nodes talk over wired Ethernet');
  const ethernets = isObj(doc.ethernets) ? Object.entries(doc.ethernets) : [];
  const fixed = ethernets.filter(([, e]) => isObj(e) && list(e.addresses).length > 0);
  if (fixed.length > 1) notes.push(`network-config gives ${fixed.length} wired links a static address: only the first, ${fixed[0]?.[0]}, is applied`);
  const [id, eth] = (fixed[0] ?? []) as [string, Obj] | [];
  if (!id || !eth) return;
  const match = isObj(eth.match) ? eth.match : {};
  const addresses = list(eth.addresses).map(String);
  if (addresses.length > 1) notes.push(`network-config ${id}: only its first address, ${addresses[0]}, is applied`);
  const routes = list(eth.routes).filter(isObj);
  const gateway = eth.gateway4 ?? routes.find((r) => r.to === 'default' || r.to === '0.0.0.0/0')?.via;
  // IPv6 name servers are left out: nodes are configured for IPv4 only.
  const dns = list(isObj(eth.nameservers) ? eth.nameservers.addresses : undefined).map(String).filter((d) => !d.includes(':'));
  const network: StaticAddress = {
    link: String(match.macaddress ?? match.name ?? id),
    address: addresses[0] as string,
    ...(gateway !== undefined ? { gateway: String(gateway) } : {}),
    dns,
  };
  const problem = staticAddressProblem(network);
  if (problem) problems.push(`network-config ${id}: ${problem}: no static address applied`);
  else identity.network = network;
}

function readNodeFile(text: string, identity: CardIdentity, problems: string[]): void {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    problems.push(`pi-image/node.json is not JSON (${(e as Error).message}): ignored`);
    return;
  }
  if (!isObj(doc) || doc.version !== 1) {
    problems.push('pi-image/node.json is not a version 1 node file: ignored');
    return;
  }
  if (doc.name !== undefined) {
    if (isHostname(doc.name)) identity.hostname = doc.name;
    else problems.push(`pi-image/node.json name ${JSON.stringify(doc.name)} is not a host name: ignored`);
  }
  if (doc.role !== undefined) {
    if (doc.role === 'root' || doc.role === 'worker') identity.role = doc.role;
    else problems.push(`pi-image/node.json role ${JSON.stringify(doc.role)} is neither root nor worker: ignored`);
  }
}

export function readCardFiles(files: CardFiles): ReadCard {
  const identity: CardIdentity = { sshKeys: [] };
  const notes: string[] = [];
  const problems: string[] = [];
  if (files.userData !== undefined) readUserData(files.userData, identity, notes, problems);
  if (files.networkConfig !== undefined) readNetworkConfig(files.networkConfig, identity, notes, problems);
  if (files.node !== undefined) readNodeFile(files.node, identity, problems);
  return { identity, notes, problems };
}

/** The systemd-networkd unit for a card's static address: that link only, no DHCP, no link-local address. */
export function staticNetworkUnit(n: StaticAddress): string {
  return [
    '# Written by pi-node first-boot from this card\'s network-config (pi-image flash --address).',
    '[Match]',
    n.link.includes(':') ? `MACAddress=${n.link.toLowerCase()}` : `Name=${n.link}`,
    '',
    '[Network]',
    `Address=${n.address}`,
    ...(n.gateway ? [`Gateway=${n.gateway}`] : []),
    ...n.dns.map((d) => `DNS=${d}`),
    'DHCP=no',
    'LinkLocalAddressing=no',
    'MulticastDNS=no',
    '',
  ].join('\n');
}
