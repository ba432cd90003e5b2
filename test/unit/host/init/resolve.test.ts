import { mkdtempSync, statSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadInitContext } from '../../../../src/host/init/context.js';
import { renderInit } from '../../../../src/host/init/render.js';
import { OTHER_KEY, resolveAnswers, type Prompter } from '../../../../src/host/init/resolve.js';
import { writeInitFiles } from '../../../../src/host/init/write.js';
import { REPO } from '../../../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'pi-image-init-resolve-'));
const home = join(dir, 'home');
mkdirSync(join(home, '.ssh'), { recursive: true });
writeFileSync(join(home, '.ssh/id_ed25519.pub'), readFileSync(join(REPO, 'test/fixtures/test-login-key.pub')));
writeFileSync(join(home, '.ssh/broken.pub'), 'not a key\n');
writeFileSync(join(dir, 'tiny.gguf'), 'GGUF');
const ctx = await loadInitContext({ cwd: dir, home });

/** A person at a terminal, answering from a script: each entry answers the next prompt (a validate failure asks again). */
function scripted(answers: unknown[]): Prompter & { asked: string[]; notes: string[] } {
  const asked: string[] = [];
  const notes: string[] = [];
  const next = () => {
    if (!answers.length) throw new Error(`no scripted answer left; asked: ${asked.join(' | ')}`);
    return answers.shift();
  };
  return {
    asked,
    notes,
    text: async (o) => {
      for (;;) {
        asked.push(o.message);
        const v = next();
        const s = v === '' && o.default !== undefined ? o.default : String(v);
        const ok = await o.validate(s);
        if (ok === true) return s;
        notes.push(ok);
      }
    },
    select: async (o) => {
      asked.push(o.message);
      const v = next();
      return v === '' ? o.default : v;
    },
    confirm: async (o) => {
      asked.push(o.message);
      const v = next();
      return v === '' ? Boolean(o.default) : Boolean(v);
    },
    checkbox: async (o) => {
      asked.push(o.message);
      const v = next();
      return v === '' ? o.choices.filter((c) => c.checked).map((c) => c.value) : (v as unknown[]);
    },
    note: (t) => notes.push(t),
  };
}

describe('init: answers from flags, defaults and a terminal', () => {
  it('knows the catalog and the keys in ~/.ssh (a broken one offered but not ticked)', () => {
    expect(ctx.boards.map((b) => [b.name, b.engine])).toEqual([['pi5', 'dllama'], ['pi4', 'dllama'], ['qemu', 'llama.cpp']]);
    expect(ctx.foundKeys.map((k) => [k.label.split(' ')[0], k.problem ?? ''])).toEqual([
      ['~/.ssh/broken.pub', 'not a public key: it does not start with a key type (ssh-ed25519, ssh-rsa, ssh-dss, …), but "not"'],
      ['~/.ssh/id_ed25519.pub', ''],
    ]);
  });

  it('without a terminal it lists every missing answer as a flag, with the defaults --yes would take', async () => {
    const r = await resolveAnswers({}, { yes: false, ctx });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toEqual([]);
    expect(r.missing.map((m) => [m.flag, m.default])).toEqual([
      ['--board <name>', 'pi5'],
      ['--storage <kind>', 'sd'],
      ['--base <kind>', 'debian'],
      ['--engine <name>', 'dllama'],
      ['--dllama-dir <dir>', undefined],
      ['--model <file>', undefined],
      ['--tokenizer <file>', undefined],
      ['--cluster <name>', 'pi-cluster'],
      ['--cluster-size <n>', '2'],
      ['--network <kind>', 'dhcp'],
      ['--ssh-key <file>', join(home, '.ssh/id_ed25519.pub')],
      ['--api-token', 'true'],
    ]);
  });

  it('with --yes it needs only what has no default', async () => {
    const r = await resolveAnswers({ board: 'qemu' }, { yes: true, ctx });
    expect(r).toEqual({ ok: false, problems: [], missing: [expect.objectContaining({ flag: '--model <file>' })] });
    const full = await resolveAnswers({ board: 'qemu', model: 'tiny.gguf' }, { yes: true, ctx });
    expect(full).toEqual({
      ok: true,
      answers: {
        board: 'qemu', storage: 'sd', base: 'debian', engine: 'llama.cpp', model: join(dir, 'tiny.gguf'), cluster: 'pi-cluster', clusterSize: 2, network: 'dhcp',
        sshKeys: [join(home, '.ssh/id_ed25519.pub')], apiToken: true, tuningProfile: 'pi5-inference',
      },
    });
  });

  it('names every wrong flag at once, in words', async () => {
    const r = await resolveAnswers(
      { board: 'pi5', engine: 'dllama', clusterSize: '3', model: 'nope.m', baseSha256: 'abc', sshKey: [join(home, '.ssh/broken.pub')], dllamaDir: dir, tokenizer: join(dir, 'tiny.gguf') },
      { yes: true, ctx },
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toEqual([
      '--base-sha256: a SHA-256 is 64 hex digits (0-9, a-f); "abc" has 3 characters',
      `--dllama-dir: ${join(dir, 'dllama')} is missing or not executable; the folder must hold prebuilt arm64 dllama and dllama-api binaries`,
      `--model: model file ${join(dir, 'nope.m')} does not exist`,
      `--tokenizer: dllama's tokenizer is a .t file, not ${join(dir, 'tiny.gguf')}`,
      '--cluster-size: dllama needs a power-of-two number of nodes (root included), not 3',
      `--ssh-key: SSH key file ${join(home, '.ssh/broken.pub')} does not start with a key type (ssh-ed25519, ssh-rsa, ssh-dss, …), but "not"`,
    ]);
    expect(r.missing.map((m) => m.flag)).toEqual(['--base-image <path-or-url>']);
  });

  it('refuses flags that do not fit the other answers', async () => {
    const r = await resolveAnswers({ board: 'qemu', model: 'tiny.gguf', dllamaDir: dir, base: 'debian', baseImage: 'x.img' }, { yes: true, ctx });
    expect(r.ok || r.problems).toEqual([
      '--base-image does not fit the other answers: it is for --base raspios',
      '--dllama-dir does not fit the other answers: it is for --engine dllama',
    ]);
  });

  it('at a terminal: asks what no flag answered, asks again after a wrong answer, and a wrong flag is said and asked again', async () => {
    const p = scripted([
      'qemu', // board
      '', // engine: the board's (llama.cpp)
      'missing.gguf', // model: does not exist…
      'tiny.gguf', // …asked again
      'lab', // cluster name: the flag's was wrong
      '', // cluster size: default 2
      '', // SSH keys: the ticked ones
      false, // no API token
    ]);
    const r = await resolveAnswers({ cluster: 'Bad Name' }, { yes: false, prompter: p, ctx });
    expect(p.notes).toEqual([
      `model file ${join(dir, 'missing.gguf')} does not exist`,
      '--cluster: cluster name "Bad Name" must start with a lower-case letter and hold only a-z, 0-9 and -, at most 24 characters',
    ]);
    expect(r.ok && [r.answers.cluster, r.answers.clusterSize, r.answers.apiToken]).toEqual(['lab', 2, false]);
  });

  it('at a terminal: the same answers as the flags give the same config', async () => {
    const p = scripted(['qemu', '', 'tiny.gguf', 'lab', '4', [join(home, '.ssh/id_ed25519.pub'), OTHER_KEY], join(REPO, 'test/fixtures/test-login-key.pub'), true]);
    const asked = await resolveAnswers({}, { yes: false, prompter: p, ctx });
    const flagged = await resolveAnswers(
      { board: 'qemu', model: 'tiny.gguf', cluster: 'lab', clusterSize: '4', sshKey: [join(home, '.ssh/id_ed25519.pub'), join(REPO, 'test/fixtures/test-login-key.pub')], apiToken: true },
      { yes: true, ctx },
    );
    expect(asked.ok && flagged.ok).toBe(true);
    if (!asked.ok || !flagged.ok) return;
    expect(renderInit(asked.answers, join(dir, 'pi-image.yaml')).text).toBe(renderInit(flagged.answers, join(dir, 'pi-image.yaml')).text);
    expect(p.asked[0]).toBe('Which board do the nodes run on?');
    // qemu: no storage or base question; one tuning profile: not asked
    expect(p.asked).toHaveLength(8);
  });

  it("a Pi 5's base question says why Raspberry Pi OS", async () => {
    const p = scripted(['pi5', 'sd', 'raspios', 'https://example.org/os.img.xz', 'F'.repeat(64), 'llama.cpp', 'tiny.gguf', '', '', 'dhcp', '', true]);
    const r = await resolveAnswers({}, { yes: false, prompter: p, ctx });
    expect(p.asked[2]).toContain("Debian's own kernel cannot drive the Pi 5's Ethernet");
    expect(r.ok && r.answers).toMatchObject({ base: 'raspios', baseImage: 'https://example.org/os.img.xz', baseSha256: 'f'.repeat(64), network: 'dhcp' });
  });

  it('static addresses: asks for the first address (again while it is wrong), the gateway and DNS', async () => {
    const p = scripted(['pi5', 'sd', 'debian', 'llama.cpp', 'tiny.gguf', '', '', 'static', '10.0.0.5', '10.0.0.5/24', '', '10.0.0.1, 9.9.9.9', '', true]);
    const r = await resolveAnswers({}, { yes: false, prompter: p, ctx });
    expect(r.ok && r.answers).toMatchObject({ network: 'static', firstAddress: '10.0.0.5/24', gateway: undefined, dns: ['10.0.0.1', '9.9.9.9'] });
    expect(p.notes.join('\n')).toMatch(/"10.0.0.5" is not an IPv4 address with a prefix length/);
    const flags = await resolveAnswers({ board: 'qemu', model: 'tiny.gguf', firstAddress: '10.0.0.5/24' }, { yes: true, ctx });
    expect(flags).toEqual({ ok: false, problems: ['--first-address does not fit the other answers: it is for --network static'], missing: [] });
  });

  it('--base-image means the Raspberry Pi OS base', async () => {
    const r = await resolveAnswers({ board: 'pi4', engine: 'llama.cpp', model: 'tiny.gguf', baseImage: 'https://x/os.img.xz', baseSha256: 'a'.repeat(64) }, { yes: true, ctx });
    expect(r.ok && r.answers.base).toBe('raspios');
  });
});

describe('init: writing the files', () => {
  it('secrets 0600 with 32 random bytes in hex, the config 0644; an existing config needs --force; an existing secret is kept', async () => {
    const out = join(dir, 'w');
    mkdirSync(out);
    const r = await resolveAnswers({ board: 'qemu', model: 'tiny.gguf' }, { yes: true, ctx });
    if (!r.ok) throw new Error('unexpected');
    const files = renderInit(r.answers, join(out, 'pi-image.yaml')).files;
    const written = await writeInitFiles(files, { force: false });
    expect(written.map((w) => [w.path.slice(out.length + 1), w.mode.toString(8), w.kept])).toEqual([
      ['cluster.secret', '600', false],
      ['api.token', '600', false],
      ['ota.key', '600', false],
      ['pi-image.yaml', '644', false],
    ]);
    expect(statSync(join(out, 'ota.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(out, 'ota.pub')).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(out, 'ota.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(readFileSync(join(out, 'ota.pub'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const updateKey = readFileSync(join(out, 'ota.key'), 'utf8');
    for (const name of ['cluster.secret', 'api.token']) {
      expect(statSync(join(out, name)).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(out, name), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    }
    expect(statSync(join(out, 'pi-image.yaml')).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(out, 'cluster.secret'), 'utf8')).not.toBe(readFileSync(join(out, 'api.token'), 'utf8'));
    const secret = readFileSync(join(out, 'cluster.secret'), 'utf8');

    await expect(writeInitFiles(files, { force: false })).rejects.toThrow(`${join(out, 'pi-image.yaml')} exists already; nothing was written`);
    const again = await writeInitFiles(files, { force: true });
    expect(again.map((w) => w.kept)).toEqual([true, true, true, false]);
    expect(readFileSync(join(out, 'cluster.secret'), 'utf8')).toBe(secret);
    expect(readFileSync(join(out, 'ota.key'), 'utf8')).toBe(updateKey);
  });
});
