import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-write.js';
import { sha256OfFile } from '../../shared/file-hash.js';

/**
 * The record of a cache entry: every file's size and SHA-256, written last. A cache entry is
 * trusted only when its files still match it: a tarball cut at an entry boundary reads as a
 * valid tarball with files missing, so "the folder is there" proves nothing.
 */
const RECORD_FILE = 'cache-entry.json';

interface RecordedFile {
  path: string;
  size: number;
  sha256: string;
}

/** The entry's files (not its record), as paths relative to it with `/`, sorted; `dirs` gets its folders. */
async function listFiles(dir: string, prefix = '', dirs: string[] = []): Promise<string[]> {
  dirs.push(join(dir, prefix));
  const files: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) files.push(...(await listFiles(dir, rel, dirs)));
    else if (e.isFile() && rel !== RECORD_FILE) files.push(rel);
  }
  return files.sort();
}

/** fsync of a file or a folder (a folder's fsync makes the names in it durable). */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a finished entry durable and records it: data fsynced, then the record (atomic, fsynced), then the folders. */
export async function writeRecord(dir: string, onProgress?: (file: string) => void): Promise<void> {
  const dirs: string[] = [];
  const files: RecordedFile[] = [];
  for (const path of await listFiles(dir, '', dirs)) {
    const full = join(dir, path);
    onProgress?.(path);
    await fsyncPath(full);
    files.push({ path, size: (await stat(full)).size, sha256: await sha256OfFile(full) });
  }
  await writeFileAtomic(join(dir, RECORD_FILE), `${JSON.stringify({ files }, null, 2)}\n`);
  for (const d of dirs) await fsyncPath(d);
}

/**
 * What is wrong with an entry, or undefined when every recorded file has its size and
 * SHA-256. Sizes are compared first (cheap); the hashes stream the files.
 */
export async function checkRecord(dir: string, onProgress?: (fraction: number, file: string) => void): Promise<string | undefined> {
  const text = await readFile(join(dir, RECORD_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return `has no checksum record (${RECORD_FILE}): an entry of an older pi-image, or one whose writing was cut short`;
  let files: RecordedFile[];
  try {
    files = (JSON.parse(text) as { files: RecordedFile[] }).files;
    if (!Array.isArray(files)) throw new Error('no file list');
  } catch {
    return `is damaged: its checksum record (${RECORD_FILE}) cannot be read`;
  }
  for (const f of files) {
    const st = await stat(join(dir, f.path)).catch(() => undefined);
    if (!st?.isFile()) return `is damaged: ${f.path} is missing`;
    if (st.size !== f.size) return `is damaged: ${f.path} has ${st.size} bytes, ${f.size} recorded`;
  }
  const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
  let done = 0;
  for (const f of files) {
    const actual = await sha256OfFile(join(dir, f.path), (fraction) => onProgress?.((done + fraction * f.size) / total, f.path));
    if (actual !== f.sha256) return `is damaged: ${f.path} does not match its recorded SHA-256`;
    done += f.size;
  }
  return undefined;
}
