import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderCardFiles } from '../../../src/host/flash/card-files.js';
import { readCardFiles, staticNetworkUnit } from '../../../src/node/card-files.js';
import { takeCardIdentity } from '../../../src/node/card-setup.js';
import { loadNodeSettings } from '../../../src/node/settings.js';
import type { CardIdentity } from '../../../src/shared/card-identity.js';
import { CARD_FILES } from '../../../src/shared/node-paths.js';

const scratch = mkdtempSync(join(tmpdir(), 'pi-image-card-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0ZbUQ8m8f4f7nqJbXo1s0Jw0N9d0qkGHc2f6n5u0p user@laptop';
const OTHER_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPdBl3fLaJkq0GQ5sFZ4nR0qj1C5h4mQmQ4r9Y5yF6xw admin@desk';

/** As Raspberry Pi Imager 2.x writes them (its cloud-init customisation), with a Wi-Fi network and a password. */
const IMAGER_USER_DATA = `#cloud-config
hostname: kitchen-pi
manage_etc_hosts: true
packages:
- avahi-daemon
users:
- name: alice
  groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
  shell: /bin/bash
  lock_passwd: false
  passwd: $5$mIxQ1xVr$Tgk7jX7q0vHqW5T2yq7r6P3u3YqV0y5W1n7s2e8Gx2C
  ssh_authorized_keys:
  - ${KEY}
  sudo: ALL=(ALL) NOPASSWD:ALL
ssh_pwauth: false
timezone: Europe/London
runcmd:
- sed -i 's/^s*REGDOMAIN=S*/REGDOMAIN=GB/' /etc/default/crda || true
`;
const IMAGER_NETWORK_CONFIG = `network:
  version: 2
  wifis:
    renderer: NetworkManager
    wlan0:
      dhcp4: true
      optional: true
      access-points:
        "home":
          password: "correct horse battery staple"
  ethernets:
    eth0:
      dhcp4: false
      addresses: [192.168.1.21/24]
      routes:
      - to: default
        via: 192.168.1.1
      nameservers:
        addresses: [192.168.1.1, "2001:db8::1"]
`;

describe('reading a card\'s identity files', () => {
  it('takes host name, SSH keys and the static address from Raspberry Pi Imager\'s files, and says what it ignores', () => {
    const { identity, notes, problems } = readCardFiles({ userData: IMAGER_USER_DATA, networkConfig: IMAGER_NETWORK_CONFIG });
    expect(problems).toEqual([]);
    expect(identity).toEqual({ hostname: 'kitchen-pi', sshKeys: [KEY], network: { link: 'eth0', address: '192.168.1.21/24', gateway: '192.168.1.1', dns: ['192.168.1.1'] } });
    expect(notes.join('\n')).toMatch(/passwords are not used/);
    expect(notes.join('\n')).toMatch(/not applied .*packages, timezone, runcmd/);
    expect(notes.join('\n')).toMatch(/wifis are not used/);
    expect(notes.join('\n')).toMatch(/user "alice": its SSH keys go to this image's login user/);
  });

  it('pi-image\'s node file wins over user-data for the name, and gives the role', () => {
    const { identity } = readCardFiles({ userData: IMAGER_USER_DATA, node: JSON.stringify({ version: 1, name: 'llm-1', role: 'root' }) });
    expect(identity).toMatchObject({ hostname: 'llm-1', role: 'root' });
  });

  it('names what is wrong and applies none of it', () => {
    const bad = readCardFiles({
      userData: '#cloud-config\nhostname: "bad name; rm -rf /"\nssh_authorized_keys: ["command=\\"sh\\" ssh-ed25519 AAAA"]\n',
      networkConfig: 'network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: ["10.0.0.300/24"]\n',
      node: '{"version":1,"role":"king"}',
    });
    expect(bad.identity).toEqual({ sshKeys: [] });
    expect(bad.problems).toEqual([
      expect.stringMatching(/hostname "bad name; rm -rf \/" is not a host name/),
      expect.stringMatching(/SSH key .* is not an OpenSSH public key line/),
      expect.stringMatching(/network-config eth0: "10.0.0.300\/24" is not an IPv4 address with a prefix length/),
      expect.stringMatching(/role "king" is neither root nor worker/),
    ]);
    expect(readCardFiles({ userData: '#!/bin/sh\necho hi\n' }).problems).toEqual([expect.stringMatching(/does not start with #cloud-config/)]);
    expect(readCardFiles({ networkConfig: 'version: 1\nconfig: []\n' }).problems).toEqual([expect.stringMatching(/not network config version 2/)]);
    expect(readCardFiles({ userData: '#cloud-config\n: : :\n  - [' }).problems).toEqual([expect.stringMatching(/user-data is not valid YAML/)]);
    expect(readCardFiles({ node: 'nope' }).problems).toEqual([expect.stringMatching(/node.json is not JSON/)]);
  });

  it('reads back exactly what pi-image flash writes', () => {
    const cards: CardIdentity[] = [
      { hostname: 'llm-2', role: 'worker', sshKeys: [KEY, OTHER_KEY], network: { link: '52:54:00:A1:00:02', address: '169.254.77.3/16', dns: [] } },
      { hostname: 'llm-3', sshKeys: [], network: { link: 'end0', address: '10.1.2.3/24', gateway: '10.1.2.1', dns: ['10.1.2.1', '9.9.9.9'] } },
      { role: 'root', sshKeys: [] },
    ];
    for (const card of cards) {
      const files = renderCardFiles(card);
      const { identity, problems, notes } = readCardFiles({ userData: files[CARD_FILES.userData], networkConfig: files[CARD_FILES.networkConfig], node: files[CARD_FILES.node] });
      expect(problems).toEqual([]);
      expect(notes).toEqual([]);
      expect(identity).toEqual(card.network?.link.includes(':') ? { ...card, network: { ...card.network, link: card.network.link.toLowerCase() } } : card);
    }
  });

  it('makes a networkd unit for that link only, with no DHCP or link-local address', () => {
    expect(staticNetworkUnit({ link: '52:54:00:a1:00:02', address: '169.254.77.3/16', dns: [] })).toContain('[Match]\nMACAddress=52:54:00:a1:00:02\n\n[Network]\nAddress=169.254.77.3/16\nDHCP=no\nLinkLocalAddressing=no');
    expect(staticNetworkUnit({ link: 'eth0', address: '10.1.2.3/24', gateway: '10.1.2.1', dns: ['9.9.9.9'] })).toContain('Name=eth0\n\n[Network]\nAddress=10.1.2.3/24\nGateway=10.1.2.1\nDNS=9.9.9.9\n');
  });
});

describe('first boot takes the card identity off the boot partition', () => {
  function card(files: Record<string, string>) {
    const root = mkdtempSync(join(scratch, 'card-'));
    const paths = { bootDir: join(root, 'boot'), authorizedKeys: join(root, 'etc/pi-image/authorized_keys'), cardSettings: join(root, 'var/card.json'), networkUnit: join(root, 'etc/systemd/network/10-card.network') };
    mkdirSync(join(paths.bootDir, 'pi-image'), { recursive: true });
    writeFileSync(join(paths.bootDir, 'config.txt'), 'keep me\n');
    writeFileSync(join(paths.bootDir, 'pi-image/cluster.secret'), 'not this one\n');
    for (const [name, text] of Object.entries(files)) writeFileSync(join(paths.bootDir, name), text);
    mkdirSync(join(root, 'etc/pi-image'), { recursive: true });
    writeFileSync(paths.authorizedKeys, `${OTHER_KEY}\n`);
    const lines: string[] = [];
    return { paths, lines, take: () => takeCardIdentity((l) => lines.push(l), paths) };
  }

  it('applies address, role and keys, then wipes every card file off the FAT (and nothing else)', async () => {
    const files = renderCardFiles({ hostname: 'llm-2', role: 'root', sshKeys: [KEY, OTHER_KEY], network: { link: 'eth0', address: '192.168.1.22/24', gateway: '192.168.1.1', dns: [] } });
    const c = card({ ...files, [CARD_FILES.networkConfig]: IMAGER_NETWORK_CONFIG });
    const identity = await c.take();
    expect(identity?.hostname).toBe('llm-2');
    expect(readFileSync(c.paths.networkUnit, 'utf8')).toContain('Address=192.168.1.21/24\nGateway=192.168.1.1');
    expect(JSON.parse(readFileSync(c.paths.cardSettings, 'utf8'))).toEqual({ role: 'root' });
    // The image's key stays, the card's new one is added once.
    expect(readFileSync(c.paths.authorizedKeys, 'utf8')).toBe(`${OTHER_KEY}\n${KEY}\n`);
    for (const name of Object.values(CARD_FILES)) expect(existsSync(join(c.paths.bootDir, name)), name).toBe(false);
    expect(readFileSync(join(c.paths.bootDir, 'config.txt'), 'utf8')).toBe('keep me\n');
    expect(existsSync(join(c.paths.bootDir, 'pi-image/cluster.secret'))).toBe(true);
    expect(c.lines.join('\n')).toMatch(/took user-data, network-config, meta-data, pi-image\/node.json off the boot partition/);
    expect(c.lines.join('\n')).not.toContain('correct horse');
    // Applied once: a second boot finds nothing.
    expect(await c.take()).toBeUndefined();
  });

  it('wipes a file it could not use too (it may hold a Wi-Fi key), and says why', async () => {
    const c = card({ [CARD_FILES.networkConfig]: 'network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [nonsense]\n  wifis: {wlan0: {access-points: {home: {password: secret}}}}\n' });
    expect(await c.take()).toEqual({ sshKeys: [] });
    expect(existsSync(join(c.paths.bootDir, CARD_FILES.networkConfig))).toBe(false);
    expect(existsSync(c.paths.networkUnit)).toBe(false);
    expect(c.lines.join('\n')).toMatch(/error: network-config eth0: "nonsense" is not an IPv4 address/);
  });

  it('the agent takes the card\'s role over the image\'s', async () => {
    const dir = mkdtempSync(join(scratch, 'settings-'));
    writeFileSync(join(dir, 'node.json'), JSON.stringify({ role: 'auto', cluster: { name: 'c' } }));
    expect((await loadNodeSettings(join(dir, 'node.json'), join(dir, 'card.json'))).role).toBe('auto');
    writeFileSync(join(dir, 'card.json'), '{"role":"worker"}\n');
    expect((await loadNodeSettings(join(dir, 'node.json'), join(dir, 'card.json'))).role).toBe('worker');
  });
});
