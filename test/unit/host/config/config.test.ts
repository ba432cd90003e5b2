import { describe, expect, it } from 'vitest';
import { configFlags, redactConfig, resolveConfig } from '../../../../src/host/config/config.js';
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
  });

  it('names an unknown key and what is allowed', () => {
    expect(() => resolveConfig({ bord: 'pi5' }, {})).toThrowError(/unknown key "bord"; allowed here: board, role/);
    expect(() => resolveConfig({ apt: { check_valid: false } }, {})).toThrowError(/unknown key "apt.check_valid"; allowed here: check_valid_until, extra_sources/);
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
});
