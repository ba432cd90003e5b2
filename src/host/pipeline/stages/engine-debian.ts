import { access, copyFile, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix, relative, sep } from 'node:path';
import { HostToolMissingError, PiImageError } from '../../errors.js';
import type { Reporter } from '../../progress.js';
import { sha256OfFile } from '../../../shared/file-hash.js';
import { runTool } from '../../tools/run.js';
import { DEBIAN_KEYRING } from './base.js';
import type { EngineBuildMeta } from './engine-build.js';

const STAGE = 'engine';

/** What llama.cpp's server, its RPC worker and the libraries and ggml backends they load come in (Debian forky and later). */
export const LLAMA_CPP_PACKAGES = ['llama.cpp-tools', 'llama.cpp-tools-extra', 'libllama0', 'libggml0', 'libggml0-backend-rpc'] as const;

/** Where a llama.cpp runtime from Debian's packages lies: one folder, the programs' libraries and ggml's backends beside them. */
export const LLAMA_CPP_DEBIAN_RUNTIME = { entry: { root: 'llama-server', worker: 'ggml-rpc-server' }, libraryPath: '.' } as const;

export interface DebianRuntimeRequest {
  suite: string;
  arch: string;
  mirror: string;
}

/** The engine stage's title for these packages (the build's and `runtime pack`'s). */
export const debianRuntimeTitle = (r: DebianRuntimeRequest) => `engine: llama.cpp from Debian ${r.suite} ${r.arch} packages`;

/**
 * Which files of the unpacked packages a llama.cpp runtime needs, and their names in the
 * runtime's one folder: the programs, the shared libraries under their sonames, and ggml's
 * backends next to the programs (ggml looks for them in the program's folder when its
 * compiled-in Debian folder does not exist, which it does not on a node: the packages are
 * never installed there). Paths are relative to the unpacked root, `/`-separated.
 */
export function llamaCppRuntimeFiles(paths: readonly string[]): { from: string; to: string; mode: 0o755 | 0o644 }[] {
  const picked: { from: string; to: string; mode: 0o755 | 0o644 }[] = [];
  const take = (pattern: RegExp, what: string, mode: 0o755 | 0o644, rename?: (name: string) => string) => {
    const hits = paths.filter((p) => pattern.test(p));
    if (!hits.length) throw new PiImageError(`the llama.cpp packages hold no ${what}`, `they changed their layout: check ${LLAMA_CPP_PACKAGES.join(', ')} of this suite`);
    for (const from of hits) picked.push({ from, to: (rename ?? ((n) => n))(posix.basename(from)), mode });
  };
  take(/^usr\/bin\/llama-server$/, 'llama-server', 0o755);
  take(/^usr\/libexec\/[^/]+\/llama\/bin\/ggml-rpc-server$/, 'ggml-rpc-server', 0o755);
  take(/^usr\/lib\/[^/]+\/llama\/libllama-server-impl\.so$/, "llama-server's library", 0o644);
  // The sonames the programs ask for (links in the packages to the versioned files).
  for (const lib of ['libllama', 'libllama-common', 'libmtmd', 'libggml', 'libggml-base']) take(new RegExp(`^usr/lib/[^/]+/${lib.replace(/[.+]/g, '\\$&')}\\.so\\.\\d+$`), `${lib}.so`, 0o644);
  take(/^usr\/lib\/[^/]+\/ggml\/backends\d*\/libggml-cpu-[^/]+\.so$/, 'ggml CPU backend', 0o644);
  take(/^usr\/lib\/[^/]+\/ggml\/backends\d*\/libggml-rpc\.so$/, 'ggml RPC backend', 0o644);
  return picked;
}

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else out.push(relative(root, full).split(sep).join('/'));
    }
  };
  await walk(root);
  return out;
}

/**
 * Downloads llama.cpp's packages of a Debian suite and architecture with apt (its own lists
 * in a private folder, the archive's signatures checked against Debian's keyring), unpacks
 * them with dpkg-deb and lays the runtime out in `outDir/bin`: the image build's engine stage
 * for llama.cpp and `runtime pack --debian-suite`. Nothing is installed on this machine.
 */
export async function runDebianRuntimeStage(opts: { request: DebianRuntimeRequest; outDir: string; reporter: Reporter; signal?: AbortSignal }): Promise<EngineBuildMeta> {
  const { request, outDir, reporter, signal } = opts;
  for (const [command, pkg] of [['apt-get', 'apt'], ['dpkg-deb', 'dpkg']] as const) {
    await runTool(command, ['--version'], { stage: STAGE, reporter }).catch(() => {
      throw new HostToolMissingError([{ name: `${command} (fetches llama.cpp's Debian packages)`, fix: `apt-get install -y ${pkg}` }]);
    });
  }
  await access(DEBIAN_KEYRING).catch(() => {
    throw new HostToolMissingError([{ name: `${DEBIAN_KEYRING} (checks the archive's signatures)`, fix: 'apt-get install -y debian-archive-keyring' }]);
  });
  const apt = join(outDir, 'apt');
  const debs = join(outDir, 'debs');
  const unpacked = join(outDir, 'root');
  for (const dir of [join(apt, 'state', 'lists', 'partial'), join(apt, 'cache', 'archives', 'partial'), join(apt, 'parts'), debs, unpacked]) await mkdir(dir, { recursive: true });
  await writeFile(join(apt, 'sources.list'), `deb [arch=${request.arch} signed-by=${DEBIAN_KEYRING}] ${request.mirror} ${request.suite} main\n`);
  await writeFile(join(apt, 'status'), '');
  const aptArgs = [
    '-q',
    '-o', `Dir::Etc::SourceList=${join(apt, 'sources.list')}`,
    '-o', `Dir::Etc::SourceParts=${join(apt, 'parts')}`,
    '-o', `Dir::Etc::PreferencesParts=${join(apt, 'parts')}`,
    '-o', `Dir::State=${join(apt, 'state')}`,
    '-o', `Dir::State::status=${join(apt, 'status')}`,
    '-o', `Dir::Cache=${join(apt, 'cache')}`,
    '-o', `APT::Architecture=${request.arch}`,
    '-o', `APT::Architectures=${request.arch}`,
    '-o', 'APT::Sandbox::User=root',
    '-o', 'Acquire::Languages=none',
    '-o', 'Debug::NoLocking=1',
  ];
  const hint = `check that ${request.mirror} is reachable and that Debian ${request.suite} has ${LLAMA_CPP_PACKAGES.join(', ')} for ${request.arch} (forky and later do)`;
  reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.05, detail: `apt-get update: Debian ${request.suite} ${request.arch}` });
  await runTool('apt-get', [...aptArgs, 'update'], { stage: STAGE, reporter, signal, hint });
  reporter.emit({ type: 'stage-progress', stage: STAGE, fraction: 0.4, detail: `apt-get download ${LLAMA_CPP_PACKAGES.join(' ')}` });
  // apt-get download saves into the working folder: execa's cwd is not in runTool, so through sh.
  await runTool('sh', ['-c', 'cd "$1" && shift && exec apt-get "$@"', 'sh', debs, ...aptArgs, 'download', ...LLAMA_CPP_PACKAGES], { stage: STAGE, reporter, signal, hint });
  const packages: NonNullable<EngineBuildMeta['packages']> = [];
  for (const deb of (await readdir(debs)).filter((n) => n.endsWith('.deb')).sort()) {
    const fields = await runTool('dpkg-deb', ['--show', '--showformat=${Package} ${Version}', join(debs, deb)], { stage: STAGE, reporter, signal });
    const [name, version] = fields.trim().split(' ');
    packages.push({ name: name as string, version: version as string });
    await runTool('dpkg-deb', ['-x', join(debs, deb), unpacked], { stage: STAGE, reporter, signal, hint: `${deb} is not a Debian package` });
  }
  const tools = packages.find((p) => p.name === 'llama.cpp-tools');
  if (!tools) throw new PiImageError(`apt-get download brought no llama.cpp-tools from Debian ${request.suite}`, hint);
  const bin = join(outDir, 'bin');
  await mkdir(bin);
  const files: EngineBuildMeta['files'] = [];
  for (const { from, to } of llamaCppRuntimeFiles(await listFiles(unpacked))) {
    // copyFile follows the packages' soname links: the folder holds regular files only, as bundles do.
    await copyFile(join(unpacked, from), join(bin, to));
    files.push({ name: to, sha256: await sha256OfFile(join(bin, to)), size: (await stat(join(bin, to))).size });
  }
  await Promise.all([apt, debs, unpacked].map((dir) => rm(dir, { recursive: true, force: true })));
  const meta: EngineBuildMeta = {
    engine: 'llama.cpp',
    // The upstream version and Debian revision, without the epoch (a manifest's version has no colon).
    version: (tools.version.split(':').at(-1) as string),
    from: `Debian ${request.suite} ${request.arch} packages`,
    packages,
    files,
  };
  await writeFile(join(outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}
