import { randomBytes } from 'node:crypto';
import { copyFile } from 'node:fs/promises';
import { silentReporter } from '../progress.js';
import { runTool } from '../tools/run.js';

/**
 * A Raspberry Pi's firmware puts the board's serial number into the device tree, and a node's
 * id comes from it (so a re-flashed card on the same board is the same node). QEMU's `virt`
 * machine has no serial: its generated device tree is dumped once, and each emulated board
 * gets a copy with a `serial-number` of its own, booted with `-dtb`.
 */
export async function dumpMachineDtb(machineArgs: string[], dest: string): Promise<void> {
  const [machine, ...rest] = machineArgs[0] === '-M' ? machineArgs.slice(1) : [];
  if (machine === undefined) throw new Error('machine arguments must start with -M');
  await runTool('qemu-system-aarch64', ['-M', `${machine},dumpdtb=${dest}`, ...rest, '-display', 'none'], {
    stage: 'emulate',
    reporter: silentReporter,
    hint: 'is qemu-system-aarch64 installed? Run scripts/setup-host',
  });
}

/** A serial number shaped like a Pi's: 16 hex digits. */
export const randomBoardSerial = () => `10000000${randomBytes(4).toString('hex')}`;

export async function boardDtb(machineDtb: string, serial: string, dest: string): Promise<void> {
  await copyFile(machineDtb, dest);
  await runTool('fdtput', ['-t', 's', dest, '/', 'serial-number', serial], {
    stage: 'emulate',
    reporter: silentReporter,
    hint: 'fdtput comes with the device-tree-compiler package: run scripts/setup-host',
  });
}
