import { createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, rename, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { PiImageError } from '../errors.js';
import { sha256OfFile } from '../../shared/file-hash.js';
import { BUNDLE_FORMAT, isSafeBundlePath, keyId, parseManifest, signManifest, type BundleFile, type BundleManifest } from '../../shared/ota/manifest.js';
import { MANIFEST_ENTRY, PAYLOAD_PREFIX, SIGNATURE_ENTRY } from '../../shared/ota/bundle-read.js';
import { packEntry } from '../pipeline/rootfs-tar.js';

export interface BundleSource {
  /** The file on this machine. */
  source: string;
  /** Its path in the bundle. */
  path: string;
  mode: 0o755 | 0o644;
}

/** Every regular file under `dir` as a bundle source (programs 0755, the rest 0644); links and devices are refused. */
export async function filesOf(dir: string): Promise<BundleSource[]> {
  const out: BundleSource[] = [];
  const walk = async (at: string) => {
    for (const entry of (await readdir(at, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(at, entry.name);
      const path = relative(dir, full).split(sep).join('/');
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) {
        if (!isSafeBundlePath(path)) throw new PiImageError(`${full}: a bundle path may hold only letters, digits and . _ + - (and not start with a dot)`);
        out.push({ source: full, path, mode: ((await lstat(full)).mode & 0o111) !== 0 ? 0o755 : 0o644 });
      } else throw new PiImageError(`${full} is ${entry.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}: bundles hold regular files only`, 'copy the files it stands for into the folder');
    }
  };
  await walk(dir);
  if (!out.length) throw new PiImageError(`${dir} holds no files`);
  return out;
}

/**
 * Writes a signed bundle: every file hashed first (the manifest names its SHA-256), the
 * manifest signed, then the tar streamed to `<out>.partial` and renamed into place.
 */
export async function packBundle(opts: {
  out: string;
  kind: BundleManifest['kind'];
  engine: BundleManifest['engine'];
  version: string;
  arch: string;
  files: BundleSource[];
  entry?: BundleManifest['entry'];
  libraryPath?: string;
  health?: BundleManifest['health'];
  privateKey: KeyObject;
  onFile?: (path: string) => void;
}): Promise<BundleManifest> {
  const files: BundleFile[] = [];
  for (const f of opts.files) {
    opts.onFile?.(f.path);
    files.push({ path: f.path, size: (await lstat(f.source)).size, sha256: await sha256OfFile(f.source), mode: f.mode });
  }
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    kind: opts.kind,
    engine: opts.engine,
    version: opts.version,
    arch: opts.arch,
    key: keyId(createPublicKey(opts.privateKey)),
    files,
    ...(opts.entry ? { entry: opts.entry } : {}),
    ...(opts.libraryPath !== undefined ? { libraryPath: opts.libraryPath } : {}),
    ...(opts.health ? { health: opts.health } : {}),
  };
  const bytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  try {
    parseManifest(bytes); // what a node will check, checked here first
  } catch (e) {
    throw new PiImageError((e as Error).message);
  }
  const signature = signManifest(bytes, opts.privateKey);
  const partial = `${opts.out}.partial`;
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(partial, { mode: 0o644 }));
  try {
    // Fixed owners and times: the same inputs give the same bundle.
    const common = { type: 'file' as const, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: new Date(0) };
    await packEntry(pack, { ...common, name: MANIFEST_ENTRY, mode: 0o644, size: bytes.length }, bytes);
    await packEntry(pack, { ...common, name: SIGNATURE_ENTRY, mode: 0o644, size: signature.length }, signature);
    for (const [i, f] of opts.files.entries()) {
      await packEntry(pack, { ...common, name: `${PAYLOAD_PREFIX}${f.path}`, mode: f.mode, size: files[i]?.size ?? 0 }, createReadStream(f.source, { highWaterMark: 1 << 20 }));
    }
    pack.finalize();
    await written;
    await rename(partial, opts.out);
  } catch (e) {
    pack.destroy();
    await written.catch(() => undefined);
    await rm(partial, { force: true });
    throw e;
  }
  return manifest;
}
