import { dirname, join } from 'node:path';
import type { Config } from '../config/config.js';
import { ConfigError } from '../errors.js';
import type { ResolvedLever } from '../../shared/tuning/levers.js';
import { eepromSettings } from '../tuning/render.js';
import { sha256OfFile } from '../../shared/file-hash.js';
import { bootOrder, checkBootconf } from './eeprom.js';

/** Boards whose bootloader EEPROM format pi-image knows (README.md, "Raspberry Pi 5"). */
export const EEPROM_BOARDS = ['pi5'];

/** Where Raspberry Pi's rpi-eeprom package keeps the Pi 5 bootloader images in a rootfs. */
export const EEPROM_FIRMWARE_GLOB = /^(?:usr\/)?lib\/firmware\/raspberrypi\/bootloader-2712\/(default|latest)\/(pieeprom-[\d-]+\.bin|recovery\.bin)$/;

export interface BootloaderPlan {
  /** bootconf.txt settings; empty means the build leaves the bootloader alone. */
  settings: Record<string, string>;
  /** Host files from pi-image.yaml (absolute paths), with their hashes (part of the cache key). */
  image?: { path: string; sha256: string };
  recovery?: { path: string; sha256: string };
}

async function hostFile(path: string, what: string): Promise<{ path: string; sha256: string }> {
  const sha256 = await sha256OfFile(path).catch(() => {
    throw new ConfigError(`bootloader.${what}: cannot read ${path}`, 'give the path of a file from the rpi-eeprom firmware-2712 directory');
  });
  return { path, sha256 };
}

/** The bootloader settings a build writes: tuning levers, then storage, then pi-image.yaml's bootloader: keys. */
export async function planBootloader(config: Config, board: string, levers: ResolvedLever[]): Promise<BootloaderPlan> {
  const b = config.bootloader;
  const settings: Record<string, string> = { ...eepromSettings(levers) };
  const order = b.boot_order ?? (config.storage === 'nvme' ? (['nvme', 'sd', 'usb'] as const) : undefined);
  if (order) settings.BOOT_ORDER = bootOrder([...order]);
  if (b.sdram_banklow !== undefined) settings.SDRAM_BANKLOW = String(b.sdram_banklow);
  if (b.pcie_probe !== undefined) settings.PCIE_PROBE = String(b.pcie_probe);
  if (b.power_off_on_halt !== undefined) settings.POWER_OFF_ON_HALT = String(b.power_off_on_halt);
  for (const [k, v] of Object.entries(b.extra ?? {})) settings[k] = String(v);

  // Refused at plan time (--print-plan fails as the build would), not when the layers are written.
  checkBootconf(settings);
  const explicit = Object.keys(b).length > 0;
  if (!EEPROM_BOARDS.includes(board)) {
    if (explicit) throw new ConfigError(`bootloader: is for ${EEPROM_BOARDS.join(', ')}; board ${board} has no bootloader EEPROM pi-image can configure`, 'remove bootloader: from pi-image.yaml');
    return { settings: {} };
  }
  const image = b.image ? await hostFile(b.image, 'image') : undefined;
  const recoveryPath = b.recovery ?? (image ? join(dirname(image.path), 'recovery.bin') : undefined);
  return { settings, image, recovery: recoveryPath ? await hostFile(recoveryPath, 'recovery') : undefined };
}
