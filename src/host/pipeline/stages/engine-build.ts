import { availableParallelism } from 'node:os';
import { chmod, copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostToolMissingError } from '../../errors.js';
import type { EngineBuild } from '../../plan/node-plan.js';
import type { Reporter } from '../../progress.js';
import { pinnedFile } from '../../tools/download.js';
import { sha256OfFile } from '../../../shared/file-hash.js';
import { runTool } from '../../tools/run.js';

const STAGE = 'engine';

/** The engine stage's result: a runtime compiled from source (dllama) or taken from Debian's packages (llama.cpp). */
export interface EngineBuildMeta {
  engine: string;
  version: string;
  /** Compiled: the compiler's own first line of `--version`, and its flags. */
  compiler?: string;
  cxxflags?: string;
  /** From packages: which suite and architecture, and each package's version. */
  from?: string;
  packages?: { name: string; version: string }[];
  files: { name: string; sha256: string; size: number }[];
}

/** The engine stage's title for this compile (the build's and `runtime pack`'s). */
export const engineBuildTitle = (b: EngineBuild) => `engine: ${b.engine} ${b.version} from source (${b.cxx} ${b.cxxflags})`;

/** Debian's package for a compiler command. */
const COMPILER_PACKAGE: Record<string, string> = { 'aarch64-linux-gnu-g++': 'g++-aarch64-linux-gnu', 'g++': 'g++' };

/**
 * Compiles the engine from its pinned source tarball into `outDir/bin` (the stage cache makes
 * `outDir` a private folder renamed into place only on success: a compile error leaves
 * nothing behind). The compiler's last lines are in the error.
 */
export async function runEngineBuildStage(opts: { build: EngineBuild; outDir: string; cacheDir: string; reporter: Reporter; signal?: AbortSignal }): Promise<EngineBuildMeta> {
  const { build, outDir, reporter, signal } = opts;
  const compiler = await runTool(build.cxx, ['--version'], { stage: STAGE, reporter }).catch(() => {
    throw new HostToolMissingError([{ name: `${build.cxx} (compiles ${build.engine} for the board)`, fix: `apt-get install -y ${COMPILER_PACKAGE[build.cxx] ?? build.cxx} make` }]);
  });
  const tarball = await pinnedFile(build.source, build.sha256, { cacheDir: opts.cacheDir, stage: STAGE, reporter, signal, what: 'engine.source' });
  const src = join(outDir, 'src');
  await mkdir(src, { recursive: true });
  reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.05, detail: `unpacking ${build.engine} ${build.version}` });
  await runTool('tar', ['-xzf', tarball, '-C', src, '--strip-components=1', '--no-same-owner', '--no-same-permissions'], { stage: STAGE, reporter, signal, hint: 'engine.source must be the release tarball (.tar.gz) of the engine' });
  reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.1, detail: `compiling ${build.targets.join(', ')} (${build.cxx} ${build.cxxflags})` });
  // Variables on make's command line replace the Makefile's own (its -march=native among them).
  await runTool('make', ['-C', src, `-j${availableParallelism()}`, ...build.targets, `CXX=${build.cxx}`, `CXXFLAGS=${build.cxxflags}`, `LIBS=${build.libs}`], {
    stage: STAGE,
    reporter,
    signal,
    hint: `the compiler's last lines are above: a source tarball that is not ${build.engine} ${build.version}, or a compiler too old for it`,
  });
  const bin = join(outDir, 'bin');
  await mkdir(bin);
  const files: EngineBuildMeta['files'] = [];
  for (const name of build.targets) {
    await copyFile(join(src, name), join(bin, name));
    await chmod(join(bin, name), 0o755);
    files.push({ name, sha256: await sha256OfFile(join(bin, name)), size: (await stat(join(bin, name))).size });
  }
  await rm(src, { recursive: true, force: true });
  const meta: EngineBuildMeta = { engine: build.engine, version: build.version, compiler: compiler.split('\n')[0] ?? build.cxx, cxxflags: build.cxxflags, files };
  await writeFile(join(outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}
