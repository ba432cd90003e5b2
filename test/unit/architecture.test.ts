import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';

/**
 * The source is split by where it runs: src/host (pi-image), src/node (pi-node, bundled into
 * the image) and src/shared (what both import). These rules keep host-only code and packages
 * off the node and keep the shared part free of either side.
 */
const SRC = join(REPO, 'src');
const HOST_ONLY_PACKAGES = ['@inquirer/prompts', 'ajv', 'commander', 'execa', 'handlebars', 'node-addon-api', 'picomatch'];
// yaml: first boot reads cloud-init's user-data and network-config (Raspberry Pi Imager writes them).
const NODE_PACKAGES = ['multicast-dns', 'yaml'];
// tar-stream: OTA bundles are tar files, written on the host and read (verified while they stream) on both sides.
const SHARED_PACKAGES = ['tar-stream'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every module a file imports: [specifier, the src/ folder it lands in or the package]. */
function imports(file: string, src: string): { spec: string; side: string }[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)].map((m) => {
    const spec = (m[1] ?? m[2]) as string;
    if (!spec.startsWith('.')) return { spec, side: spec.startsWith('node:') ? 'node:' : spec.split('/')[0] as string };
    const target = relative(src, resolve(dirname(file), spec));
    return { spec, side: target.startsWith('..') ? 'outside src' : (target.split('/')[0] as string) };
  });
}

function violations(side: 'node' | 'shared' | 'host', allowed: (importSide: string) => boolean, src = SRC): string[] {
  return sources(join(src, side)).flatMap((file) =>
    imports(file, src).filter((i) => !allowed(i.side)).map((i) => `${relative(REPO, file)} imports ${i.spec}`),
  );
}

describe('where code runs', () => {
  it('the node agent imports only itself, shared code, Node built-ins and its own packages', () => {
    expect(violations('node', (s) => ['node', 'shared', 'node:', ...NODE_PACKAGES, ...SHARED_PACKAGES].includes(s))).toEqual([]);
  });

  it('shared code imports only shared code, Node built-ins and the packages both sides carry', () => {
    expect(violations('shared', (s) => ['shared', 'node:', ...SHARED_PACKAGES].includes(s))).toEqual([]);
  });

  it('the host tool does not import the node agent', () => {
    expect(violations('host', (s) => s !== 'node' && s !== 'outside src')).toEqual([]);
  });

  it('the rule catches a forbidden import', () => {
    const src = mkdtempSync(join(tmpdir(), 'pi-image-arch-'));
    try {
      mkdirSync(join(src, 'node/agent'), { recursive: true });
      writeFileSync(join(src, 'node/agent/x.ts'), "import { planBuild } from '../../host/pipeline/pipeline.js';\nimport Ajv from 'ajv';\n");
      expect(violations('node', (s) => ['node', 'shared', 'node:'].includes(s), src)).toEqual([
        `${relative(REPO, join(src, 'node/agent/x.ts'))} imports ../../host/pipeline/pipeline.js`,
        `${relative(REPO, join(src, 'node/agent/x.ts'))} imports ajv`,
      ]);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });

  it('the pi-node bundle holds no host-only package and no host module', async () => {
    const result = await build({
      entryPoints: [join(SRC, 'node/main.ts')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    const packages = new Set(inputs.filter((p) => p.includes('node_modules/')).map((p) => p.split('node_modules/').at(-1)?.split('/')[0]));
    expect([...packages].filter((p) => HOST_ONLY_PACKAGES.includes(p as string))).toEqual([]);
    expect(inputs.filter((p) => p.startsWith('src/host/'))).toEqual([]);
    expect(inputs.some((p) => p.startsWith('src/shared/'))).toBe(true);
  });
});
