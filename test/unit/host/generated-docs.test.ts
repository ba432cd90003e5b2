import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { leversMarkdown } from '../../../src/host/cli/levers-command.js';
import { configReferenceMarkdown } from '../../../src/host/config/reference.js';
import { loadTuningProfile, resolveLevers } from '../../../src/host/catalog/tuning-profiles.js';
import { REPO } from '../../helpers/cli.js';

describe('generated documentation', () => {
  it("README's tuning section is the generated one (run `npm run docs` after changing a lever)", async () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const block = /<!-- levers:begin[^>]*-->\n([\s\S]*?)<!-- levers:end -->/.exec(readme)?.[1];
    expect(block).toBe(leversMarkdown(await loadTuningProfile('pi5-inference')));
  });

  it("README's configuration reference is the one generated from the schema", () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const block = /<!-- config:begin[^>]*-->\n([\s\S]*?)<!-- config:end -->/.exec(readme)?.[1];
    expect(block).toBe(configReferenceMarkdown());
  });

  it('rejects an unknown lever and a value outside the allowed ones', async () => {
    const profile = await loadTuningProfile('pi5-inference');
    expect(() => resolveLevers(profile, 'qemu', { gro_of: false })).toThrowError(/unknown lever "gro_of"/);
    expect(() => resolveLevers(profile, 'qemu', { swappiness: 'lots' })).toThrowError(/tuning.swappiness: value "lots" is not allowed/);
    expect(() => resolveLevers(profile, 'qemu', { gro_off: 'yes' })).toThrowError(/tuning.gro_off takes no value/);
  });

  it('lists every measured lever the project documents', async () => {
    const ids = (await loadTuningProfile('pi5-inference')).levers.map((l) => l.id);
    expect(ids).toEqual(
      expect.arrayContaining(['sdram_banklow', 'engine_cpus', 'nic_cpu', 'jemalloc', 'cpu_governor', 'memlock', 'tcp_bbr', 'tcp_buffers', 'gro_off', 'busy_poll', 'swappiness', 'rx_ring', 'napi_defer', 'quiet_node', 'no_overclock']),
    );
  });
});
