import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../../src/host/config/config.js';
import { planBuild } from '../../../../src/host/plan/plan-build.js';
import { planSummary } from '../../../../src/host/plan/plan-summary.js';
import { REPO } from '../../../helpers/cli.js';

const plan = async (raw: Record<string, unknown>) => (await planBuild(resolveConfig(raw, {}), { env: {} })).plan;
const failure = (raw: Record<string, unknown>) => plan(raw).then(() => '', (e: Error & { hint?: string }) => `${e.message}\n${e.hint ?? ''}`);
const layerNames = (p: Awaited<ReturnType<typeof plan>>) => p.layers.map((l) => l.name);

describe('the engine follows engine:, not the board', () => {
  it("installs llama.cpp's layer for the board's default engine, and says where the engine came from", async () => {
    const qemu = await plan({});
    expect(layerNames(qemu).filter((n) => n === 'engine-llama-cpp')).toHaveLength(1);
    expect(qemu.engine).toEqual({ name: 'llama.cpp', from: "the qemu board's default", runtime: 'llama.cpp from Debian forky arm64 packages (llama.cpp-tools, llama.cpp-tools-extra, libllama0, libggml0, libggml0-backend-rpc), unpacked into the first runtime folder' });
    expect(qemu.cacheKeys.engine).toBeDefined();
    // Listed by the user as well: applied once.
    expect(layerNames(await plan({ layers: ['engine-llama-cpp'] })).filter((n) => n === 'engine-llama-cpp')).toHaveLength(1);
  });

  it('gives a Pi 5 llama.cpp when asked, or says which suites have its packages', async () => {
    expect(await failure({ board: 'pi5', engine: { name: 'llama.cpp' } })).toMatch(
      /engine llama\.cpp: its packages are in Debian forky and sid only, not trixie\n.*--suite forky/,
    );
    const onForky = await plan({ board: 'pi5', suite: 'forky', engine: { name: 'llama.cpp' } });
    expect(layerNames(onForky)).toContain('engine-llama-cpp');
    // Unpacked into the runtime folder, not installed: only what they need is.
    expect(onForky.base.packages).toEqual(expect.arrayContaining(['libgomp1', 'libssl3t64']));
    expect(onForky.base.packages).not.toContain('llama.cpp-tools');
    expect(onForky.node.debianRuntime).toEqual({ suite: 'forky', arch: 'arm64', mirror: 'http://deb.debian.org/debian' });
    expect(onForky.engine.from).toBe('the config');
    const withSource = await plan({ board: 'pi5', engine: { name: 'llama.cpp' }, apt: { extra_sources: [{ uris: ['http://deb.debian.org/debian'], suites: ['forky'], components: ['main'] }] } });
    expect(layerNames(withSource)).toContain('engine-llama-cpp');
    expect(withSource.node.debianRuntime?.suite).toBe('forky');
    // The default engine of a Pi is dllama: no llama.cpp packages on it.
    expect(layerNames(await plan({ board: 'pi5' }))).not.toContain('engine-llama-cpp');
  });

  it("names the board's default engine when its rule fails, and not when the user chose it", async () => {
    const implied = await failure({ board: 'pi5', cluster: { size: 3 } });
    expect(implied).toMatch(/cluster\.size 3: dllama needs a power-of-two number of nodes \(root included\), not 3 \(dllama is the pi5 board's default engine\)\n.*--engine/);
    const chosen = await failure({ board: 'pi5', cluster: { size: 3 }, engine: { name: 'dllama', dllama_dir: join(REPO, 'test/fixtures') } });
    expect(chosen).not.toContain("board's default");
  });
});

describe('plan warnings', () => {
  it('warns of what would leave a user stuck: no SSH key, Debian kernel on a Pi 5, no model', async () => {
    const warnings = (await plan({ board: 'pi5' })).warnings;
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(/^no SSH key .*nobody can log in/);
    expect(warnings[1]).toMatch(/^Debian's kernel cannot drive a Pi 5's Ethernet/);
    expect(warnings[2]).toMatch(/^no model/);
    // A Pi 4 has no such caveat; Raspberry Pi's archive or image lifts the Pi 5's.
    expect((await plan({ board: 'pi4' })).warnings.some((w) => w.includes('Ethernet'))).toBe(false);
    const rpi = await plan({ board: 'pi5', apt: { extra_sources: [{ uris: ['http://archive.raspberrypi.com/debian'], suites: ['trixie'], components: ['main'] }] } });
    expect(rpi.warnings.some((w) => w.includes('Ethernet'))).toBe(false);
  });

  it('has none when the config gives a key and a model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-warn-'));
    const { tinyGguf } = await import('../../../../src/host/model/tiny-gguf.js');
    writeFileSync(join(dir, 'm.gguf'), tinyGguf());
    expect((await plan({ user: { ssh_keys: [join(REPO, 'test/fixtures/test-login-key.pub')] }, model: { path: join(dir, 'm.gguf') } })).warnings).toEqual([]);
  });
});

describe('plan summary', () => {
  it('shows, one line each, what is built from what, then the warnings', async () => {
    const text = planSummary(await plan({ board: 'pi5', cluster: { size: 4, name: 'lab' } }));
    const lines = text.trimEnd().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['board', 'base', 'kernel', 'engine', 'model', 'cluster', 'memory', 'system', 'login', 'layers', 'tuning', 'outputs', 'cache', 'warning', 'warning', 'warning']);
    expect(text).toContain("engine   dllama (the pi5 board's default), runtime: none in the image");
    expect(text).toContain('kernel   linux-image-arm64');
    expect(text).toContain('cluster  lab: 4 nodes, role auto, API port 8080');
    expect(text).toMatch(/tuning {3}pi5-inference: \d+ levers on\n/);
    const off = planSummary(await plan({ board: 'pi5', tuning: { no_overclock: false } }));
    expect(off).toMatch(/levers on, off: no_overclock\n/);
  });
});

describe('time zone and locale', () => {
  it('defaults to UTC and C.UTF-8; another locale brings locales-all', async () => {
    const dflt = await plan({});
    expect(dflt.system).toEqual({ timezone: 'Etc/UTC', locale: 'C.UTF-8', ntpServers: [] });
    expect(dflt.base.packages).not.toContain('locales-all');
    const berlin = await plan({ timezone: 'Europe/Berlin', locale: 'de_DE.UTF-8' });
    expect(berlin.system).toEqual({ timezone: 'Europe/Berlin', locale: 'de_DE.UTF-8', ntpServers: [] });
    expect(berlin.base.packages).toContain('locales-all');
    // Only the layers change with the time zone; the base with the locale.
    expect((await plan({ timezone: 'Europe/Berlin' })).cacheKeys).toMatchObject({ base: dflt.cacheKeys.base });
    expect((await plan({ timezone: 'Europe/Berlin' })).cacheKeys.layers).not.toBe(dflt.cacheKeys.layers);
    expect(berlin.cacheKeys.base).not.toBe(dflt.cacheKeys.base);
  });

  it('takes the time servers from the config, a name or an address; a bad one is refused', async () => {
    const lan = await plan({ ntp_servers: ['192.168.1.1', 'ntp.example.org'] });
    expect(lan.system.ntpServers).toEqual(['192.168.1.1', 'ntp.example.org']);
    expect(lan.cacheKeys.layers).not.toBe((await plan({})).cacheKeys.layers);
    expect(await failure({ ntp_servers: ['ntp server'] })).toMatch(/ntp_servers/);
  });

  it('refuses a zone that does not exist, with the one meant, and a locale that is not one', async () => {
    expect(await failure({ timezone: 'Europe/Berln' })).toMatch(/timezone "Europe\/Berln" is not a time zone \(did you mean "Europe\/Berlin"\?\)/);
    expect(await failure({ locale: 'german' })).toMatch(/key "locale": value "german" does not match/);
  });
});

describe('memory budget in the plan', () => {
  it('is computed from the model header and refused before any work when a node would swap', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-budget-'));
    const { tinyGguf } = await import('../../../../src/host/model/tiny-gguf.js');
    writeFileSync(join(dir, 'm.gguf'), tinyGguf());
    const fits = await plan({ model: { path: join(dir, 'm.gguf') } });
    expect(fits.node.memory).toMatchObject({ ramMib: 1024, root: { role: 'root', reservedMib: 256 }, worker: { role: 'worker' } });
    expect(planSummary(fits)).toMatch(/memory +root \d+ MiB \(weights \d+, KV cache \d+, buffers 128, OS 256\); worker .* of 1024 MiB each/);
    expect(await failure({ model: { path: join(dir, 'm.gguf') }, board_ram_mib: 300 })).toMatch(/^memory: the root would need \d+ MiB .* but the board has 300 MiB: it would swap/);
  });
});

describe('model aliases', () => {
  it("reach the node settings; the model's own id is not an alias", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pi-image-alias-'));
    const { tinyGguf } = await import('../../../../src/host/model/tiny-gguf.js');
    writeFileSync(join(dir, 'demo.gguf'), tinyGguf());
    const p = await plan({ model: { path: join(dir, 'demo.gguf'), aliases: ['gpt-4o-mini'] } });
    expect(p.node.settings.model).toMatchObject({ name: 'demo', aliases: ['gpt-4o-mini'] });
    expect(await failure({ model: { path: join(dir, 'demo.gguf'), aliases: ['demo'] } })).toMatch(/model\.aliases: "demo" is the model's own id/);
  });
});
