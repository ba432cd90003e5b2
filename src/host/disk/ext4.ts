import type { Reporter } from '../progress.js';
import { runTool } from '../tools/run.js';
import { derivedUuid, type DiskLayout } from './layout.js';

/** ext4 `rootfs` written by mke2fs straight from the rootfs tarball into the disk image at its offset. */
export async function makeRootFilesystem(opts: {
  image: string;
  layout: DiskLayout;
  rootfsTar: string;
  sourceDateEpoch: number;
  reporter: Reporter;
  signal?: AbortSignal;
}): Promise<void> {
  const { root, diskId } = opts.layout;
  await runTool(
    'mke2fs',
    [
      '-q', '-F', '-t', 'ext4', '-b', '4096',
      '-L', root.label,
      '-U', derivedUuid(diskId, 'rootfs'),
      '-E', `offset=${root.startBytes},hash_seed=${derivedUuid(diskId, 'rootfs-hash-seed')},root_owner=0:0,nodiscard`,
      '-d', opts.rootfsTar,
      opts.image,
      String(root.sizeBytes / 4096),
    ],
    {
      stage: 'disk',
      reporter: opts.reporter,
      signal: opts.signal,
      env: { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), E2FSPROGS_FAKE_TIME: String(opts.sourceDateEpoch) },
      hint: 'mke2fs could not write the root filesystem; its last lines are above',
    },
  );
}
