import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/**
 * An OTA bundle's manifest: what the bundle holds and what it is for. It is signed with
 * Ed25519 (Node's crypto) by the cluster owner's update key; nodes trust only the public keys
 * their image lists. The bytes signed are the manifest exactly as stored in the bundle.
 */
export const BUNDLE_FORMAT = 'pi-image-bundle/1';

export interface BundleFile {
  /** Relative path inside the version's folder (`bin/llama-server`, `model.gguf`). */
  path: string;
  size: number;
  sha256: string;
  /** 0o755 for programs, 0o644 for data. */
  mode: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  kind: 'runtime' | 'model';
  engine: 'llama.cpp' | 'dllama';
  /** The engine's version (runtime) or the model's (model): compared for downgrades. */
  version: string;
  /** Debian architecture the programs are built for (`arm64`); `all` for a model. */
  arch: string;
  /** Which key signed it: the first 16 hex digits of the SHA-256 of its public key (SPKI DER). */
  key: string;
  files: BundleFile[];
  /** A runtime: the program each role runs, relative to the version's folder. */
  entry?: { root: string; worker: string };
  /**
   * A runtime whose programs load shared libraries of their own (llama.cpp from Debian's
   * packages): the folder they are in, relative to the version's folder (`.` for the folder
   * itself); the engine runs with it first on the library search path.
   */
  libraryPath?: string;
  /**
   * The health check's expectation at temperature 0 for `prompt`, `tokens` long: the SHA-256 of
   * the generated token ids (decimal, comma-separated; llama.cpp reports them) or of the
   * generated text (UTF-8; any engine, dllama-api reports no ids).
   */
  health?: { prompt: string; tokens: number; tokenIdsSha256?: string; textSha256?: string };
}

export class BundleError extends Error {
  constructor(
    readonly code: 'unsigned' | 'bad-signature' | 'unknown-key' | 'malformed' | 'tampered' | 'truncated' | 'wrong-arch' | 'wrong-engine' | 'wrong-kind' | 'unsafe-path',
    message: string,
  ) {
    super(message);
    this.name = 'BundleError';
  }
}

/** A public key's id as manifests name it. */
export function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

export function signManifest(manifest: Buffer, privateKey: KeyObject): Buffer {
  return sign(null, manifest, privateKey);
}

/** Paths a bundle may hold: relative, no `..`, no empty or hidden-trick segments. */
export const isSafeBundlePath = (p: string) => /^[A-Za-z0-9_][A-Za-z0-9._+-]*(\/[A-Za-z0-9_][A-Za-z0-9._+-]*)*$/.test(p) && p.length <= 255;

/** A runtime's library folder: the version's folder itself (`.`) or a safe path inside it. */
export const isLibraryPath = (p: unknown): p is string => typeof p === 'string' && (p === '.' || isSafeBundlePath(p));

const isHex = (s: unknown, n: number) => typeof s === 'string' && new RegExp(`^[0-9a-f]{${n}}$`).test(s);

/** The manifest in these bytes, each field checked, or a BundleError naming the first problem. */
export function parseManifest(bytes: Buffer): BundleManifest {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new BundleError('malformed', `the bundle's manifest is not JSON: ${(e as Error).message}`);
  }
  const bad = (what: string) => new BundleError('malformed', `the bundle's manifest ${what}`);
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad('is not an object');
  if (m.format !== BUNDLE_FORMAT) throw bad(`has format ${JSON.stringify(m.format)}, not ${BUNDLE_FORMAT} (made by another pi-image version?)`);
  if (m.kind !== 'runtime' && m.kind !== 'model') throw bad(`kind ${JSON.stringify(m.kind)} is neither runtime nor model`);
  if (m.engine !== 'llama.cpp' && m.engine !== 'dllama') throw bad(`engine ${JSON.stringify(m.engine)} is unknown`);
  if (typeof m.version !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9.+~_-]{0,63}$/.test(m.version)) throw bad(`version ${JSON.stringify(m.version)} is not a version string`);
  if (typeof m.arch !== 'string' || !/^[a-z0-9]{2,16}$/.test(m.arch)) throw bad(`arch ${JSON.stringify(m.arch)} is not an architecture`);
  if (!isHex(m.key, 16)) throw bad('names no signing key');
  if (!Array.isArray(m.files) || m.files.length === 0 || m.files.length > 10_000) throw bad('lists no files');
  const seen = new Set<string>();
  for (const f of m.files as Record<string, unknown>[]) {
    if (typeof f !== 'object' || f === null) throw bad('has a file entry that is not an object');
    if (typeof f.path !== 'string' || !isSafeBundlePath(f.path)) throw new BundleError('unsafe-path', `the bundle's manifest lists an unsafe path ${JSON.stringify(f.path)}`);
    if (seen.has(f.path)) throw bad(`lists ${f.path} twice`);
    seen.add(f.path);
    if (!Number.isSafeInteger(f.size) || (f.size as number) < 0) throw bad(`gives ${f.path} no size`);
    if (!isHex(f.sha256, 64)) throw bad(`gives ${f.path} no SHA-256`);
    if (f.mode !== 0o755 && f.mode !== 0o644) throw bad(`gives ${f.path} mode ${String(f.mode)}, not 0755 or 0644`);
  }
  if (m.kind === 'runtime') {
    const entry = m.entry as Record<string, unknown> | undefined;
    if (!entry || typeof entry.root !== 'string' || typeof entry.worker !== 'string') throw bad('names no entry points (root, worker) for the runtime');
    for (const role of ['root', 'worker'] as const) {
      const file = (m.files as BundleFile[]).find((f) => f.path === entry[role]);
      if (!file || file.mode !== 0o755) throw bad(`entry point ${role} ${JSON.stringify(entry[role])} is not an executable file of the bundle`);
    }
    if (m.libraryPath !== undefined && !isLibraryPath(m.libraryPath)) throw new BundleError('unsafe-path', `the bundle's manifest names an unsafe library folder ${JSON.stringify(m.libraryPath)}`);
  }
  if (m.health !== undefined) {
    const h = m.health as Record<string, unknown>;
    const hashes = [h.tokenIdsSha256, h.textSha256].filter((x) => x !== undefined);
    if (typeof h.prompt !== 'string' || !Number.isSafeInteger(h.tokens) || (h.tokens as number) < 1 || hashes.length === 0 || !hashes.every((x) => isHex(x, 64))) {
      throw bad('has a health check without prompt, tokens and tokenIdsSha256 or textSha256');
    }
  }
  return m as unknown as BundleManifest;
}

/**
 * Checks the manifest's signature against the trusted keys before anything else of the bundle
 * is looked at: a manifest signed by no trusted key, or not signed at all, is refused.
 */
export function verifyManifest(bytes: Buffer, signature: Buffer | undefined, trusted: KeyObject[]): BundleManifest {
  if (!signature || signature.length === 0) throw new BundleError('unsigned', 'the bundle is not signed: sign it with `pi-image runtime pack --key` (or model pack)');
  // The key id is read before the signature is checked only to pick the key; nothing else is trusted yet.
  let claimed: unknown;
  try {
    claimed = (JSON.parse(bytes.toString('utf8')) as { key?: unknown }).key;
  } catch {
    throw new BundleError('malformed', "the bundle's manifest is not JSON");
  }
  const key = trusted.find((k) => keyId(k) === claimed);
  if (!key) {
    throw new BundleError('unknown-key', `the bundle is signed by key ${typeof claimed === 'string' ? claimed.slice(0, 16) : '(none)'}, which is not trusted here (trusted: ${trusted.map(keyId).join(', ') || 'none'})`);
  }
  if (signature.length !== 64 || !verify(null, bytes, key, signature)) throw new BundleError('bad-signature', `the bundle's signature does not match its manifest for key ${keyId(key)}: it was altered or signed by another key`);
  return parseManifest(bytes);
}

/** A public key from PEM text (SPKI), checked to be Ed25519. */
export function publicKeyFromPem(pem: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new Error(`${what} is not a public key in PEM: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${what} is a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

/** Compares two versions part by part, numbers as numbers (`b5123` < `b6000`, `0.16.3` < `0.16.4`). */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.split(/[.+~_-]/).flatMap((p) => p.match(/\d+|\D+/g) ?? []);
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const [p, q] = [x[i], y[i]];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    const [np, nq] = [Number(p), Number(q)];
    const c = /^\d+$/.test(p) && /^\d+$/.test(q) ? np - nq : p.localeCompare(q);
    if (c !== 0) return Math.sign(c);
  }
  return 0;
}
