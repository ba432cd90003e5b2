import { createHash, type KeyObject } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import * as tar from 'tar-stream';
import { BundleError, verifyManifest, type BundleFile, type BundleManifest } from './manifest.js';

/**
 * A bundle is a tar file: `manifest.json`, `manifest.sig` (64 bytes of Ed25519 signature), then
 * `payload/<path>` for every file of the manifest, in its order. Reading it streams: the
 * signature is checked before any payload byte is looked at, every file is hashed as it
 * passes (into `sink`, a staging folder, when given), and anything the manifest does not
 * announce — an extra entry, a short file, a missing one — is refused.
 */
export const MANIFEST_ENTRY = 'manifest.json';
export const SIGNATURE_ENTRY = 'manifest.sig';
export const PAYLOAD_PREFIX = 'payload/';

export interface ReadBundleOptions {
  trusted: KeyObject[];
  expect?: { arch?: string; engine?: string; kind?: BundleManifest['kind'] };
  /** Called once the manifest is trusted and matches `expect`: a last check before the payload (free space, downgrade). */
  accept?: (manifest: BundleManifest) => void | Promise<void>;
  /** Where a verified file's bytes go (a staging folder); without it, they are only checked. */
  sink?: (file: BundleFile) => Promise<Writable>;
  onBytes?: (n: number) => void;
}

async function readEntry(entry: AsyncIterable<unknown>, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry) {
    size += (chunk as Buffer).length;
    if (size > max) throw new BundleError('malformed', `the bundle's ${what} is larger than ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function writeTo(sink: Writable, chunk: Buffer): Promise<void> {
  if (!sink.write(chunk)) await once(sink, 'drain');
}

export async function readBundle(input: Readable, opts: ReadBundleOptions): Promise<BundleManifest> {
  const extract = tar.extract();
  // pipe() does not pass a read error on: the extractor must end with it.
  input.once('error', (e) => extract.destroy(e));
  input.pipe(extract);
  let manifestBytes: Buffer | undefined;
  let signature: Buffer | undefined;
  let manifest: BundleManifest | undefined;
  let next = 0;
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      if (!manifest) {
        if (manifestBytes === undefined) {
          if (name !== MANIFEST_ENTRY) throw new BundleError('malformed', `the bundle does not start with ${MANIFEST_ENTRY} (found ${JSON.stringify(name)}): not a pi-image bundle`);
          manifestBytes = await readEntry(entry, 4 << 20, 'manifest');
          continue;
        }
        if (name === SIGNATURE_ENTRY) signature = await readEntry(entry, 1024, 'signature');
        manifest = verifyManifest(manifestBytes, signature, opts.trusted);
        const want = opts.expect ?? {};
        if (want.kind && manifest.kind !== want.kind) throw new BundleError('wrong-kind', `the bundle is a ${manifest.kind} bundle, not a ${want.kind} bundle`);
        if (want.engine && manifest.engine !== want.engine) throw new BundleError('wrong-engine', `the bundle is for ${manifest.engine}, but this cluster runs ${want.engine}`);
        if (want.arch && manifest.arch !== want.arch && manifest.arch !== 'all') throw new BundleError('wrong-arch', `the bundle is built for ${manifest.arch}, but the nodes are ${want.arch}`);
        // The caller's refusal (downgrade, disk space) is its own error, not a damaged tar.
        const trusted = manifest;
        await Promise.resolve()
          .then(() => opts.accept?.(trusted))
          .catch((e: unknown) => Promise.reject(new AcceptRefused(e)));
        if (name === SIGNATURE_ENTRY) continue;
      }
      const file = manifest.files[next];
      if (!file || name !== `${PAYLOAD_PREFIX}${file.path}`) {
        throw new BundleError('tampered', `the bundle holds ${JSON.stringify(name)} where its manifest ${file ? `announces ${PAYLOAD_PREFIX}${file.path}` : 'announces nothing more'}`);
      }
      if (entry.header.type !== 'file' || entry.header.size !== file.size) {
        throw new BundleError('tampered', `${file.path} in the bundle is ${entry.header.type === 'file' ? `${entry.header.size} bytes, the manifest says ${file.size}` : `a ${entry.header.type}, not a file`}`);
      }
      const hash = createHash('sha256');
      const sink = await opts.sink?.(file);
      let size = 0;
      for await (const chunk of entry) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        opts.onBytes?.((chunk as Buffer).length);
        if (sink) await writeTo(sink, chunk as Buffer);
      }
      if (sink) {
        sink.end();
        await once(sink, 'close');
      }
      if (size !== file.size) throw new BundleError('truncated', `${file.path} ends after ${size} of ${file.size} bytes: the bundle is truncated`);
      if (hash.digest('hex') !== file.sha256) throw new BundleError('tampered', `${file.path} does not match its SHA-256 in the signed manifest: the bundle was altered or damaged`);
      next++;
    }
  } catch (e) {
    input.unpipe(extract);
    input.destroy();
    if (e instanceof BundleError) throw e;
    if (e instanceof AcceptRefused) throw e.reason;
    const message = (e as Error).message;
    if (/unexpected end|premature|truncat/i.test(message)) throw new BundleError('truncated', `the bundle ends early (${message}): it is truncated`);
    throw new BundleError('malformed', `the bundle is not a valid tar file: ${message}`);
  }
  if (manifestBytes === undefined) throw new BundleError('truncated', 'the bundle is empty');
  if (!manifest) manifest = verifyManifest(manifestBytes, signature, opts.trusted);
  if (next < manifest.files.length) throw new BundleError('truncated', `the bundle ends before ${manifest.files[next]?.path}: ${manifest.files.length - next} of ${manifest.files.length} files missing`);
  return manifest;
}

/** Carries what `accept` threw through the tar reader's error handling unchanged. */
class AcceptRefused {
  constructor(readonly reason: unknown) {}
}
