import { describe, expect, it } from 'vitest';
import { parse, parseDocument } from 'yaml';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { loadSchema, schemaPath, validateAgainst } from '../../../../src/host/config/validate.js';
import type { InitAnswers } from '../../../../src/host/init/questions.js';
import { renderInit, wrapComment } from '../../../../src/host/init/render.js';

const QEMU: InitAnswers = {
  board: 'qemu',
  storage: 'sd',
  base: 'debian',
  engine: 'llama.cpp',
  model: '/models/tiny.gguf',
  cluster: 'lab',
  clusterSize: 3,
  network: 'dhcp',
  sshKeys: ['/home/me/.ssh/id_ed25519.pub', '/work/cfg/keys/extra.pub'],
  apiToken: true,
  tuningProfile: 'pi5-inference',
};

const PI5: InitAnswers = {
  board: 'pi5',
  storage: 'nvme',
  base: 'raspios',
  baseImage: '/work/cfg/2025-10-01-raspios-trixie-arm64-lite.img.xz',
  baseSha256: '0123456789012345678901234567890123456789012345678901234567890123',
  engine: 'dllama',
  dllamaDir: '/opt/dllama',
  model: '/work/cfg/model.m',
  tokenizer: '/work/cfg/model.t',
  cluster: 'pis',
  clusterSize: 4,
  network: 'static',
  firstAddress: '192.168.1.21/24',
  gateway: '192.168.1.1',
  dns: [],
  sshKeys: [],
  apiToken: false,
  tuningProfile: 'pi5-inference',
};

describe('init: answers → pi-image.yaml', () => {
  it('writes the answers as config keys; the text parses back to the same values', () => {
    const out = renderInit(QEMU, '/work/cfg/pi-image.yaml');
    expect(out.config).toEqual({
      board: 'qemu',
      tuning_profile: 'pi5-inference',
      cluster: { name: 'lab', size: 3, secret_file: './cluster.secret', api_token_file: './api.token' },
      engine: { name: 'llama.cpp' },
      model: { path: '/models/tiny.gguf' },
      // a path inside the config's folder is written relative to it (as loadConfig reads it)
      user: { ssh_keys: ['/home/me/.ssh/id_ed25519.pub', './keys/extra.pub'] },
      // the update key made next to the config: the image trusts its public half
      ota: { trusted_keys: ['./ota.pub'] },
    });
    expect(parse(out.text)).toEqual(out.config);
  });

  it('a Pi 5 from Raspberry Pi OS with dllama: base, storage, dllama_dir, tokenizer; an all-digit sha256 stays a string', () => {
    const out = renderInit(PI5, '/work/cfg/pi-image.yaml');
    expect(out.config).toMatchObject({
      board: 'pi5',
      storage: 'nvme',
      base: { image: './2025-10-01-raspios-trixie-arm64-lite.img.xz', sha256: PI5.baseSha256 },
      cluster: { name: 'pis', size: 4, secret_file: './cluster.secret' },
      network: { addresses: 'static', first_address: '192.168.1.21/24', gateway: '192.168.1.1' },
      engine: { name: 'dllama', dllama_dir: '/opt/dllama' },
      model: { path: './model.m', tokenizer: './model.t' },
      user: { ssh_keys: [] },
    });
    expect((out.config.cluster as Record<string, unknown>).api_token_file).toBeUndefined();
    expect(parse(out.text)).toEqual(out.config);
    expect(typeof (parse(out.text) as { base: { sha256: unknown } }).base.sha256).toBe('string');
    expect(out.text).not.toContain('NOTE: no `base:`');
  });

  it('validates against the schema, and resolveConfig takes it unchanged with paths relative to the file', () => {
    for (const answers of [QEMU, PI5]) {
      const out = renderInit(answers, '/work/cfg/pi-image.yaml');
      expect(validateAgainst('config', parse(out.text))).toEqual([]);
      const config = resolveConfig(parse(out.text) as Record<string, unknown>, {}, { dir: '/work/cfg' });
      expect(config.cluster.secret_file).toBe('/work/cfg/cluster.secret');
      expect(config.model?.path).toBe(answers.model);
      expect(config.user.ssh_keys).toEqual(answers.sshKeys);
    }
  });

  it("puts the schema's description (and the build flag) above every key", () => {
    const schema = loadSchema('config');
    const out = renderInit(PI5, '/work/cfg/pi-image.yaml');
    // First the editor modeline (yaml-language-server validates every key against the schema), then the header.
    expect(out.text.startsWith(`# yaml-language-server: $schema=${schemaPath('config')}\n\n# pi-image.yaml, written by \`pi-image init\`.`)).toBe(true);
    expect(parseDocument(out.text).errors).toEqual([]);
    const flat = out.text.replace(/\n\s*#\s*/g, ' ');
    const described = (desc: string | undefined) => wrapComment(desc ?? '').join(' ');
    for (const [key, node] of Object.entries(schema.properties ?? {})) {
      if (!(key in out.config)) continue;
      expect(flat, key).toContain(described(node.description));
      for (const [sub, subNode] of Object.entries(node.properties ?? {})) {
        if ((out.config[key] as Record<string, unknown>)[sub] !== undefined) expect(flat, `${key}.${sub}`).toContain(described(subNode.description));
      }
    }
    expect(out.text).toContain('# Cluster name: nodes are named <cluster>-<id>');
    expect(out.text).toContain('(pi-image build --cluster-size)');
    expect(out.text.split('\n').every((l) => l.length <= 100)).toBe(true);
  });

  it('warns in the file that a Pi 5 from Debian packages has no Ethernet', () => {
    const out = renderInit({ ...PI5, base: 'debian', baseImage: undefined, baseSha256: undefined }, '/w/pi-image.yaml');
    expect(out.config.base).toBeUndefined();
    expect(out.text).toContain("whose kernel cannot drive\n# the Pi 5's Ethernet (RP1)");
  });

  it('lists the files to create: the config 0644, the secrets 0600, made when written (never in the output)', () => {
    expect(renderInit(QEMU, '/work/cfg/pi-image.yaml').files.map((f) => [f.path, f.mode.toString(8), 'random' in f ? f.random : 'keyPair' in f ? f.keyPair : 'text'])).toEqual([
      ['/work/cfg/pi-image.yaml', '644', 'text'],
      ['/work/cfg/cluster.secret', '600', 'hex32'],
      ['/work/cfg/api.token', '600', 'hex32'],
      ['/work/cfg/ota.key', '600', 'ed25519'],
    ]);
    expect(renderInit(PI5, '/work/cfg/pi-image.yaml').files.map((f) => f.path)).toEqual(['/work/cfg/pi-image.yaml', '/work/cfg/cluster.secret', '/work/cfg/ota.key']);
  });

  it('a storage of sd on qemu is left out (it means nothing there)', () => {
    expect(renderInit(QEMU, '/w/pi-image.yaml').config.storage).toBeUndefined();
    expect(renderInit({ ...QEMU, storage: 'usb' }, '/w/pi-image.yaml').config.storage).toBe('usb');
  });
});
