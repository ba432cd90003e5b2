import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
import { configFlags, findConfigFile, loadConfig, redactConfig, resolveConfig } from '../../../../src/host/config/config.js';
import { ConfigError } from '../../../../src/host/errors.js';

describe('configuration', () => {
  it('fills defaults for an empty file', () => {
    const config = resolveConfig({}, {});
    expect(config.board).toBe('qemu');
    expect(config.role).toBe('auto');
    expect(config.apt.check_valid_until).toBe(true);
    expect(config.rootfs.headroom_mib).toBe(256);
    expect(config.mirrors).toEqual(['http://deb.debian.org/debian']);
  });

  it('lets flags override the file', () => {
    const config = resolveConfig({ board: 'pi5', compression: { level: 3 } }, { board: 'qemu', zstdLevel: '9', checkValidUntil: false });
    expect(config.board).toBe('qemu');
    expect(config.compression.level).toBe(9);
    expect(config.apt.check_valid_until).toBe(false);
    // A number flag (not only whole numbers) arrives as a number; text stays text for the validator to name.
    expect(resolveConfig({}, { engine: 'dllama', engineTemperature: '0.7' }).engine.temperature).toBe(0.7);
    expect(() => resolveConfig({}, { engine: 'dllama', engineTemperature: 'warm' })).toThrow(/key "engine.temperature": value "warm" is not of type number/);
  });

  it('names an unknown key and what is allowed', () => {
    expect(() => resolveConfig({ bord: 'pi5' }, {})).toThrowError(/unknown key "bord" \(did you mean "board"\?\); allowed here: board, role/);
    expect(() => resolveConfig({ cluster: { szie: 3 } }, {})).toThrowError(/unknown key "cluster.szie" \(did you mean "size"\?\)/);
    expect(() => resolveConfig({ zzzzzz: 1 }, {})).toThrowError(/unknown key "zzzzzz"; allowed here/);
    expect(() => resolveConfig({ apt: { check_valid: false } }, {})).toThrowError(/unknown key "apt.check_valid"; allowed here: check_valid_until, extra_sources/);
  });

  it("points at YAML's traps: an unquoted hash read as a number, a key left empty, one word for a list", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-yaml-trap-'));
    writeFileSync(join(dir, 'pi-image.yaml'), 'base:\n  image: x.img\n  sha256: 1234567890123456789012345678901234567890123456789012345678901234\nhostname:\npackages: htop\n');
    const message = await loadConfig(join(dir, 'pi-image.yaml'), {}, dir).then(() => '', (e: Error) => e.message);
    expect(message).toMatch(/key "base.sha256": value 1\.2345\d*e\+63 is not of type string \(YAML read it as a number and may have changed it: put the value in quotes/);
    expect(message).toMatch(/key "hostname": value null is not of type string \(the key has no value/);
    expect(message).toMatch(/key "packages": value "htop" is not of type array \(a list: write \[a, b\]/);
  });

  it('names the key, the bad value and the allowed values', () => {
    const err = (() => {
      try {
        resolveConfig({ role: 'boss', compression: { level: 'high' }, mirrors: ['ftp://x'] }, {});
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('no error');
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('key "role": value "boss" is not allowed; allowed: "auto", "root", "worker"');
    expect(err.message).toContain('key "compression.level": value "high" is not of type integer');
    expect(err.message).toContain('key "mirrors[0]": value "ftp://x" does not match');
  });

  it('rejects a flag value of the wrong type', () => {
    expect(() => resolveConfig({}, { headroomMib: 'lots' })).toThrowError(/rootfs.headroom_mib": value "lots" is not of type integer/);
  });

  it('exposes every flagged setting once', () => {
    const flags = configFlags().map((f) => f.flag.split(' ')[0]);
    expect(new Set(flags).size).toBe(flags.length);
    expect(flags).toEqual(expect.arrayContaining(['--board', '--role', '--out', '--mirror', '--check-valid-until', '--zstd-level']));
  });

  it('redacts credentials from URLs in the recorded config', () => {
    const config = resolveConfig({ mirrors: ['https://user:s3cret@mirror.example/debian'] }, {});
    const redacted = JSON.stringify(redactConfig(config));
    expect(redacted).not.toContain('s3cret');
    expect(redacted).toContain('https://<redacted>@mirror.example/debian');
  });

  it("makes every path absolute once: relative to the config file's folder, --out to the working directory", () => {
    const file = {
      out: 'images',
      base: { image: 'raspios.img.xz', sha256: 'a'.repeat(64) },
      apt: { extra_sources: [{ uris: ['http://x/'], suites: ['s'], components: ['main'], signed_by: 'keys/x.gpg' }] },
      layers: ['./mine', 'engine-llama-cpp', '/abs/layer'],
      bootloader: { image: 'eeprom/pieeprom.bin' },
      cluster: { secret_file: 'cluster.secret', api_token_file: '../api.token' },
      engine: { dllama_dir: 'bin' },
      model: { path: 'm.gguf' },
      user: { ssh_keys: ['id.pub', '/home/me/.ssh/id_ed25519.pub'] },
    };
    const config = resolveConfig(file, {}, { dir: '/etc/conf' });
    expect(config.out).toBe('/etc/conf/images');
    expect(config.base?.image).toBe('/etc/conf/raspios.img.xz');
    expect(config.apt.extra_sources[0]?.signed_by).toBe('/etc/conf/keys/x.gpg');
    expect(config.layers).toEqual(['/etc/conf/mine', 'engine-llama-cpp', '/abs/layer']);
    expect(config.bootloader).toEqual({ image: '/etc/conf/eeprom/pieeprom.bin' });
    expect(config.cluster).toMatchObject({ secret_file: '/etc/conf/cluster.secret', api_token_file: '/etc/api.token' });
    expect(config.engine.dllama_dir).toBe('/etc/conf/bin');
    expect(config.model?.path).toBe('/etc/conf/m.gguf');
    expect(config.user.ssh_keys).toEqual(['/etc/conf/id.pub', '/home/me/.ssh/id_ed25519.pub']);
    expect(file.out).toBe('images'); // the file's data is left as it was

    expect(resolveConfig(file, { out: 'elsewhere' }, { dir: '/etc/conf' }).out).toBe(join(process.cwd(), 'elsewhere'));
    expect(resolveConfig({}, {}, { dir: '/etc/conf' }).out).toBe(join(process.cwd(), 'out'));
    expect(resolveConfig({ base: { image: 'https://example.org/raspios.img.xz', sha256: 'a'.repeat(64) } }, {}, { dir: '/etc/conf' }).base?.image).toBe('https://example.org/raspios.img.xz');
  });

  it('reads ./pi-image.yaml when no --config is given, with its paths relative to it; none there: flags and defaults', async () => {
    const here = mkdtempSync(join(tmpdir(), 'pi-image-cwd-'));
    expect(await findConfigFile(undefined, here)).toBeUndefined();
    expect((await loadConfig(undefined, {}, here)).hostname).toBe('pi-image');
    writeFileSync(join(here, 'pi-image.yaml'), 'hostname: from-the-file\nmodel: { path: models/m.gguf }\n');
    expect(await findConfigFile(undefined, here)).toBe(join(here, 'pi-image.yaml'));
    const config = await loadConfig(undefined, {}, here);
    expect(config.hostname).toBe('from-the-file');
    expect(config.model?.path).toBe(join(here, 'models/m.gguf'));
    // --config wins over the file in the working directory.
    const other = mkdtempSync(join(tmpdir(), 'pi-image-other-'));
    writeFileSync(join(other, 'x.yaml'), 'hostname: from-x\n');
    expect((await loadConfig(join(other, 'x.yaml'), {}, here)).hostname).toBe('from-x');
  });

  it('the example config that ships in docs/ is valid, and its editor modeline names the schema', () => {
    const text = readFileSync(join(REPO_ROOT, 'docs/examples/pi-image.yaml'), 'utf8');
    const modeline = /^# yaml-language-server: \$schema=(.+)$/m.exec(text)?.[1] as string;
    expect(existsSync(join(REPO_ROOT, 'docs/examples', modeline))).toBe(true);
    const config = resolveConfig(parseYaml(text), {}, { dir: join(REPO_ROOT, 'docs/examples') });
    expect(config).toMatchObject({ board: 'pi5', storage: 'nvme', cluster: { name: 'lab', size: 4 } });
  });
});
