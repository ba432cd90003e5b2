import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO, runCli } from '../helpers/cli.js';
import { dllamaModelHeader } from '../helpers/dllama-model.js';
import { tinyGguf } from '../../src/host/model/tiny-gguf.js';

const CLI = join(REPO, 'dist/host/cli/main.js');
const work = mkdtempSync(join(tmpdir(), 'pi-image-init-'));
const home = join(work, 'home');
mkdirSync(join(home, '.ssh'), { recursive: true });
copyFileSync(join(REPO, 'test/fixtures/test-login-key.pub'), join(home, '.ssh/id_ed25519.pub'));
writeFileSync(join(work, 'tiny.gguf'), tinyGguf());
const env = { HOME: home };

/** Runs `pi-image init` without a terminal (stdin ignored, output captured); every path given is absolute. */
const init = (args: string[]) => runCli(['init', ...args], { env });
const at = (...p: string[]) => join(work, ...p);

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
const printPlan = (config: string) => runCli(['build', '--config', config, '--print-plan', '--json']);
/** The whole plan: the data of the `result` event `--print-plan --json` prints. */
const planOf = (stdout: string) => (stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; data?: unknown }).find((e) => e.type === 'result')?.data ?? {}) as Record<string, unknown>;

describe('pi-image init, without a terminal', () => {
  it('--yes with flags writes a config that `build --print-plan` accepts unchanged; secret and token 0600', async () => {
    const config = at('a', 'pi-image.yaml');
    mkdirSync(at('a'));
    const run = await init(['--yes', '--board', 'qemu', '--cluster', 'lab', '--cluster-size', '3', '--model', at('tiny.gguf'), '--out-config', config]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain('next: pi-image build --config');
    expect(mode(config)).toBe('644');
    expect(mode(at('a', 'cluster.secret'))).toBe('600');
    expect(mode(at('a', 'api.token'))).toBe('600');
    const secret = readFileSync(at('a', 'cluster.secret'), 'utf8').trim();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(run.stdout + run.stderr).not.toContain(secret);

    // The update key: private 0600 next to the config, never printed; the image gets only its public half.
    expect(mode(at('a', 'ota.key'))).toBe('600');
    expect(mode(at('a', 'ota.pub'))).toBe('644');
    const privateKey = readFileSync(at('a', 'ota.key'), 'utf8').split('\n')[1] as string;
    expect(run.stdout + run.stderr).not.toContain(privateKey);

    const plan = await printPlan(config);
    expect(plan.exitCode, plan.stderr).toBe(0);
    const p = planOf(plan.stdout) as { board: { name: string }; node: { settings: { cluster: { name: string; size: number } }; files: { source: string; target: string }[] } };
    expect(JSON.stringify(p)).not.toContain(secret);
    expect(JSON.stringify(p)).not.toContain(privateKey);
    expect(p.node.files.filter((f) => f.target.startsWith('etc/pi-image/ota-keys/')).map((f) => f.source)).toEqual([at('a', 'ota.pub')]);
    expect(p.board.name).toBe('qemu');
    expect(p.node.settings.cluster).toMatchObject({ name: 'lab', size: 3 });
  });

  it('a Pi 5 from a Raspberry Pi OS image with dllama: accepted by `build --print-plan` too', async () => {
    const bin = at('dllama-bin');
    mkdirSync(bin);
    for (const b of ['dllama', 'dllama-api']) {
      writeFileSync(join(bin, b), '#!/bin/sh\n');
      chmodSync(join(bin, b), 0o755);
    }
    writeFileSync(at('model.m'), dllamaModelHeader({ kvHeads: 8 }));
    writeFileSync(at('model.t'), 't');
    mkdirSync(at('pi5'));
    const config = at('pi5', 'pi-image.yaml');
    const run = await init([
      '--yes', '--board', 'pi5', '--storage', 'nvme', '--base-image', 'https://downloads.example.org/raspios-trixie-arm64-lite.img.xz', '--base-sha256', '1'.repeat(64),
      '--engine', 'dllama', '--dllama-dir', bin, '--model', at('model.m'), '--tokenizer', at('model.t'), '--cluster-size', '4', '--no-api-token', '--out-config', config,
    ]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(existsSync(at('pi5', 'api.token'))).toBe(false);
    expect(parse(readFileSync(config, 'utf8'))).toMatchObject({ board: 'pi5', storage: 'nvme', base: { sha256: '1'.repeat(64) }, engine: { name: 'dllama', dllama_dir: bin } });
    const plan = await printPlan(config);
    expect(plan.exitCode, plan.stderr).toBe(0);
  });

  it('exits 2 listing the answers it still needs, as flags, and writes nothing', async () => {
    const config = at('none', 'pi-image.yaml');
    mkdirSync(at('none'));
    const run = await init(['--board', 'qemu', '--out-config', config]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toMatch(/error: no terminal to ask in; pi-image init still needs this answer:\n {2}--model <file> +model file on this machine/);
    expect(run.stderr).toMatch(/and these, or --yes to take their defaults:\n {2}--engine <name> .*\(default: llama\.cpp\)\n {2}--cluster <name>/);
    expect(run.stderr).toContain('nothing was written');
    expect(existsSync(config)).toBe(false);
    expect(existsSync(at('none', 'cluster.secret'))).toBe(false);
  });

  it('exits 2 naming what is wrong (dllama with 3 nodes, a short sha256)', async () => {
    const run = await init(['--yes', '--board', 'pi5', '--engine', 'dllama', '--cluster-size', '3', '--base-image', at('tiny.gguf'), '--base-sha256', 'abc', '--model', at('tiny.gguf'), '--out-config', at('bad.yaml')]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toContain('error: --cluster-size: dllama needs a power-of-two number of nodes (root included), not 3');
    expect(run.stderr).toContain('error: --base-sha256: a SHA-256 is 64 hex digits (0-9, a-f); "abc" has 3 characters');
    expect(run.stderr).toContain('error: --model: dllama loads .m model files, not .gguf');
    expect(existsSync(at('bad.yaml'))).toBe(false);
  });

  it('refuses to overwrite a config without --force, and keeps the cluster secret when forced', async () => {
    mkdirSync(at('f'));
    const config = at('f', 'pi-image.yaml');
    const args = ['--yes', '--board', 'qemu', '--model', at('tiny.gguf'), '--out-config', config];
    expect((await init(args)).exitCode).toBe(0);
    const before = readFileSync(config, 'utf8');
    const secret = readFileSync(at('f', 'cluster.secret'), 'utf8');
    const again = await init([...args, '--cluster', 'other']);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`error: ${config} exists already; nothing was written`);
    expect(again.stderr).toContain('pass --force to replace it');
    expect(readFileSync(config, 'utf8')).toBe(before);
    const forced = await init([...args, '--cluster', 'other', '--force']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(parse(readFileSync(config, 'utf8'))).toMatchObject({ cluster: { name: 'other' } });
    expect(readFileSync(at('f', 'cluster.secret'), 'utf8')).toBe(secret);
    expect(forced.stdout).toContain('kept: it was there already');
  });
});

describe('pi-image init in a terminal (tmux)', () => {
  const socket = `pi-image-init-${process.pid}`;
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
  afterAll(() => {
    spawnSync('tmux', ['-L', socket, 'kill-server']);
  });

  const screen = () => tmux('capture-pane', '-p', '-J', '-t', 'init', '-S', '-200');
  async function waitFor(text: string, timeoutMs = 15_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = screen();
      if (s.includes(text)) return s;
      if (Date.now() > end) throw new Error(`waited ${timeoutMs} ms for "${text}"; the terminal shows:\n${s}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const type = (text: string) => tmux('send-keys', '-t', 'init', '-l', text);
  const key = (...keys: string[]) => tmux('send-keys', '-t', 'init', ...keys);

  it('asks, asks again after a wrong answer, and writes what the same flags write', async () => {
    if (spawnSync('tmux', ['-V']).status !== 0) throw new Error('tmux is missing: run scripts/setup-host (it installs tmux, which this test drives init through)');
    mkdirSync(at('tty'));
    mkdirSync(at('flags'));
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const command = `cd ${quote(work)} && HOME=${quote(home)} ${quote(process.execPath)} ${quote(CLI)} init --out-config tty/pi-image.yaml; echo "EXIT=$?"; sleep 600`;
    tmux('new-session', '-d', '-s', 'init', '-x', '160', '-y', '50', command);

    await waitFor('Which board do the nodes run on?');
    key('Down', 'Down', 'Enter'); // pi5, pi4, qemu
    await waitFor('Inference engine?');
    key('Enter'); // the board's: llama.cpp
    await waitFor('Model file on this machine (.gguf)');
    type('missing.gguf');
    key('Enter');
    await waitFor(`model file ${join(work, 'missing.gguf')} does not exist`);
    key(...Array<string>(20).fill('BSpace'));
    type('tiny.gguf');
    key('Enter');
    await waitFor('Cluster name');
    type('lab');
    key('Enter');
    await waitFor('How many nodes, root included?');
    type('4');
    key('Enter');
    await waitFor('Public SSH keys that may log in');
    key('Enter'); // the ticked ~/.ssh key
    await waitFor('Require a bearer token for the cluster API?');
    type('n');
    key('Enter');
    const done = await waitFor('EXIT=');
    expect(done).toContain('EXIT=0');
    expect(done).toContain('next: pi-image build --config tty/pi-image.yaml');

    const flags = await init(['--yes', '--board', 'qemu', '--model', at('tiny.gguf'), '--cluster', 'lab', '--cluster-size', '4', '--no-api-token', '--out-config', at('flags', 'pi-image.yaml')]);
    expect(flags.exitCode, flags.stderr).toBe(0);
    const asked = parse(readFileSync(at('tty', 'pi-image.yaml'), 'utf8')) as Record<string, unknown>;
    expect(asked).toEqual(parse(readFileSync(at('flags', 'pi-image.yaml'), 'utf8')));
    expect(asked).toMatchObject({ board: 'qemu', cluster: { name: 'lab', size: 4, secret_file: './cluster.secret' }, user: { ssh_keys: [join(home, '.ssh/id_ed25519.pub')] } });
    expect(mode(at('tty', 'cluster.secret'))).toBe('600');
    expect(existsSync(at('tty', 'api.token'))).toBe(false);
    // each run makes its own secret, and the terminal never shows it
    const secret = readFileSync(at('tty', 'cluster.secret'), 'utf8').trim();
    expect(secret).not.toBe(readFileSync(at('flags', 'cluster.secret'), 'utf8').trim());
    expect(done).not.toContain(secret);
    expect((await printPlan(at('tty', 'pi-image.yaml'))).exitCode).toBe(0);
  });
});
