import { open, rmdir, unlink } from 'node:fs/promises';

/**
 * Overwrites a file with zeros, syncs, deletes it, then removes its folder once empty: a FAT
 * delete alone leaves the data in its clusters, readable by anyone holding the card.
 */
export async function wipeAndDelete(path: string, dir: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const { size } = await handle.stat();
    await handle.write(Buffer.alloc(size), 0, size, 0);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await unlink(path);
  await syncDir(dir);
  await rmdir(dir).catch(() => undefined); // only when empty
}

export async function syncDir(path: string): Promise<void> {
  const dir = await open(path, 'r');
  await dir.sync().catch(() => undefined); // not every file system syncs a folder
  await dir.close();
}
