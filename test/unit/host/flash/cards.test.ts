import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterNameBeside, nthAddress, planCards } from '../../../../src/host/flash/cards.js';
import { identityProblem } from '../../../../src/host/flash/card-files.js';

describe('flash --count: which card gets which target and name', () => {
  it('one card: the target and --node as given', () => {
    expect(planCards({ target: 'card.img', count: 1, node: 'llm-root' })).toEqual([{ index: 1, target: 'card.img', name: 'llm-root' }]);
    expect(planCards({ target: 'card.img', count: 1 })).toEqual([{ index: 1, target: 'card.img' }]);
    expect(() => planCards({ target: 'card-{n}.img', count: 1 })).toThrow(/has \{n\} in it, but only one card/);
  });

  it('several files: the pattern numbered from 1, names <prefix>-1…N from --node or the cluster', () => {
    expect(planCards({ target: 'cards/node-{n}.img', count: 3, clusterName: 'llm' })).toEqual([
      { index: 1, target: 'cards/node-1.img', name: 'llm-1' },
      { index: 2, target: 'cards/node-2.img', name: 'llm-2' },
      { index: 3, target: 'cards/node-3.img', name: 'llm-3' },
    ]);
    expect(planCards({ target: '{n}.img', count: 2, node: 'pi', clusterName: 'llm' }).map((c) => c.name)).toEqual(['pi-1', 'pi-2']);
  });

  it('--index: the card\'s number in the cluster names it, alone or as the first of several', () => {
    expect(planCards({ target: 'card.img', count: 1, clusterName: 'llm', first: 3 })).toEqual([{ index: 3, target: 'card.img', name: 'llm-3' }]);
    expect(planCards({ target: 'card.img', count: 1, node: 'boss', clusterName: 'llm', first: 3 })).toEqual([{ index: 3, target: 'card.img', name: 'boss' }]);
    expect(planCards({ target: 'c-{n}.img', count: 2, clusterName: 'llm', first: 4 }).map((c) => [c.target, c.name])).toEqual([['c-4.img', 'llm-4'], ['c-5.img', 'llm-5']]);
    expect(() => planCards({ target: 'card.img', count: 1, first: 2 })).toThrow(/--index 2: no name for the card/);
    expect(() => planCards({ target: 'card.img', count: 1, clusterName: 'llm', first: 0 })).toThrow(/--index must be a whole number from 1 to 64/);
  });

  it('says what is missing', () => {
    expect(() => planCards({ target: 'card.img', count: 3, clusterName: 'llm' })).toThrow(/needs a block device .* or file names with \{n\}/);
    expect(() => planCards({ target: 'c-{n}.img', count: 3 })).toThrow(/no names for the cards/);
    expect(() => planCards({ target: 'c-{n}.img', count: 0, node: 'x' })).toThrow(/--count must be a whole number from 1 to 64/);
    expect(() => planCards({ target: 'c-{n}.img', count: 2.5, node: 'x' })).toThrow(/--count must be/);
  });

  it('reads the cluster name from the manifest the build wrote beside the image', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-cards-'));
    expect(clusterNameBeside(join(dir, 'pi-image-pi5.img.zst'))).toBeUndefined();
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ config: { cluster: { name: 'llm' } } }));
    expect(clusterNameBeside(join(dir, 'pi-image-pi5.img.zst'))).toBe('llm');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('flash --count --address: the next addresses in the subnet', () => {
  it('counts up from the first card, across octets', () => {
    expect([1, 2, 3].map((i) => nthAddress('192.168.1.21/24', i))).toEqual(['192.168.1.21/24', '192.168.1.22/24', '192.168.1.23/24']);
    expect(nthAddress('10.0.0.255/16', 2)).toBe('10.0.1.0/16');
  });

  it('refuses to run past the subnet\'s broadcast address', () => {
    expect(nthAddress('192.168.1.253/24', 2)).toBe('192.168.1.254/24');
    expect(() => nthAddress('192.168.1.253/24', 3)).toThrow(/card 3 would need an address beyond its \/24 subnet/);
  });
});

describe('a card identity from the command line', () => {
  it('names the bad value', () => {
    expect(identityProblem({ hostname: 'llm_1', sshKeys: [] })).toMatch(/--node "llm_1" is not a host name/);
    expect(identityProblem({ sshKeys: ['-----BEGIN OPENSSH PRIVATE KEY-----'] })).toMatch(/is not an OpenSSH public key line/);
    expect(identityProblem({ sshKeys: [], network: { link: 'eth0', address: '192.168.1.21', dns: [] } })).toMatch(/--address: "192.168.1.21" is not an IPv4 address with a prefix length/);
    expect(identityProblem({ sshKeys: [], network: { link: 'eth0', address: '192.168.1.21/24', gateway: 'router', dns: [] } })).toMatch(/gateway "router"/);
    expect(identityProblem({ sshKeys: [], network: { link: 'eth 0', address: '192.168.1.21/24', dns: [] } })).toMatch(/neither an interface name nor a MAC address/);
    expect(identityProblem({ hostname: 'llm-1', role: 'root', sshKeys: [], network: { link: 'eth0', address: '192.168.1.21/24', dns: ['1.1.1.1'] } })).toBeUndefined();
  });
});

describe('the bmap beside an image', () => {
  it('x.img and x.img.zst take x.bmap (as the build names it), else x.img.bmap; an image without .img is never its own bmap', async () => {
    const { bmapBeside } = await import('../../../../src/host/flash/flash.js');
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-bmap-beside-'));
    writeFileSync(join(dir, 'card'), 'not a bmap');
    expect(bmapBeside(join(dir, 'card'))).toBeUndefined();
    writeFileSync(join(dir, 'card.bmap'), '<bmap/>');
    expect(bmapBeside(join(dir, 'card'))).toBe(join(dir, 'card.bmap'));
    writeFileSync(join(dir, 'x.bmap'), '<bmap/>');
    expect(bmapBeside(join(dir, 'x.img.zst'))).toBe(join(dir, 'x.bmap'));
    expect(bmapBeside(join(dir, 'x.img'))).toBe(join(dir, 'x.bmap'));
    writeFileSync(join(dir, 'y.img.bmap'), '<bmap/>');
    expect(bmapBeside(join(dir, 'y.img'))).toBe(join(dir, 'y.img.bmap'));
    rmSync(dir, { recursive: true, force: true });
  });
});
