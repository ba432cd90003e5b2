import { startTool, type ToolProcess } from '../tools/run.js';
import type { DirectBootFiles } from './boot-files.js';

export interface VmOptions {
  image: string;
  boot: DirectBootFiles;
  memoryMib?: number;
  cpus?: number;
  /** Extra kernel command line words. */
  append?: string[];
  /** QEMU network arguments; none means no network at all. */
  netArgs?: string[];
  /** Prefix command, e.g. ['ip', 'netns', 'exec', 'ns'] to run QEMU inside a network namespace. */
  wrapper?: string[];
  name?: string;
  /** A device tree to boot with instead of QEMU's own (see board-serial.ts). */
  dtb?: string;
  /** A reboot inside the guest reboots the VM (QEMU resets it) instead of ending QEMU. */
  allowReboot?: boolean;
  onOutput?: (text: string) => void;
}

/** What shapes the machine's device tree: a `-dtb` must come from a dump with the same ones. */
export function machineArgs(o: Pick<VmOptions, 'cpus' | 'memoryMib'>): string[] {
  return ['-M', 'virt', '-cpu', 'cortex-a76', '-smp', String(o.cpus ?? 2), '-m', String(o.memoryMib ?? 1024)];
}

/**
 * One emulated arm64 node (QEMU virt, cortex-a76, software emulation) with its serial
 * console on stdio: the tests and `pi-image emulate` drive nodes through this.
 */
export class QemuVm {
  private process?: ToolProcess;
  private output = '';
  private waiters: { re: RegExp; from: number; resolve: (m: RegExpMatchArray) => void; fail: (e: Error) => void }[] = [];
  private isExited = false;
  private exitWaiters: (() => void)[] = [];
  private commandSeq = 0;

  constructor(readonly options: VmOptions) {}

  /** Resolves when QEMU has exited. */
  get exited(): Promise<void> {
    return new Promise<void>((resolve) => (this.isExited ? resolve() : this.exitWaiters.push(resolve)));
  }

  get hasExited(): boolean {
    return this.isExited;
  }

  get consoleLog(): string {
    return this.output;
  }

  qemuArgs(): string[] {
    const o = this.options;
    return [
      ...machineArgs(o),
      '-accel', 'tcg,thread=multi',
      '-display', 'none',
      '-monitor', 'none',
      '-chardev', 'stdio,id=console,signal=off',
      '-serial', 'chardev:console',
      '-drive', `file=${o.image},format=raw,if=virtio,cache=unsafe`,
      '-device', 'virtio-rng-pci',
      '-kernel', o.boot.kernel,
      '-initrd', o.boot.initrd,
      '-append', [o.boot.cmdline, ...(o.append ?? [])].join(' '),
      ...(o.dtb ? ['-dtb', o.dtb] : []),
      ...(o.allowReboot ? [] : ['-no-reboot']),
      ...(o.netArgs ?? ['-nic', 'none']),
    ];
  }

  start(): void {
    const [cmd, ...pre] = [...(this.options.wrapper ?? []), 'qemu-system-aarch64'];
    this.process = startTool(cmd as string, [...pre, ...this.qemuArgs()], { stdin: 'pipe' });
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      this.output += text;
      this.options.onOutput?.(text);
      this.checkWaiters();
    };
    this.process.stdout?.on('data', onData);
    this.process.stderr?.on('data', onData);
    void this.process.ended.then(() => {
      this.isExited = true;
      this.exitWaiters.splice(0).forEach((w) => w());
      this.checkWaiters();
      // Nothing more will be printed: whoever still waits fails now, with the console's last words.
      for (const waiter of this.waiters.splice(0)) waiter.fail(this.exitedWhileWaiting(waiter.re));
    });
  }

  private exitedWhileWaiting(re: RegExp): Error {
    return new Error(`${this.options.name ?? 'vm'}: QEMU exited while waiting for ${re}; console tail:\n${this.output.slice(-3000)}`);
  }

  private checkWaiters(): void {
    for (const waiter of [...this.waiters]) {
      const m = this.output.slice(waiter.from).match(waiter.re);
      if (m) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(m);
      }
    }
  }

  /** Waits until the console prints something matching `re` (searching from `from`, default: everything so far). */
  waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const waiter = {
        re,
        from,
        resolve: (m: RegExpMatchArray) => {
          clearTimeout(timer);
          resolve(m);
        },
        fail: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.options.name ?? 'vm'}: timed out after ${timeoutMs / 1000}s waiting for ${re}; console tail:\n${this.output.slice(-3000)}`));
      }, timeoutMs);
      this.waiters.push(waiter);
      this.checkWaiters();
      if (this.isExited && this.waiters.includes(waiter)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.fail(this.exitedWhileWaiting(re));
      }
    });
  }

  send(text: string): void {
    this.process?.stdin?.write(text);
  }

  /** Runs a shell command on the console (a shell must be at its prompt) and returns its output and exit status. */
  async run(command: string, timeoutMs = 60_000): Promise<{ output: string; status: number }> {
    const n = ++this.commandSeq;
    const from = this.output.length;
    // A brace group, closed on its own line, so a command may end in & (a background job); the
    // shell prints no prompt inside it. The quotes keep the markers out of the echoed input.
    this.send(`echo @@B${n}""@@; { ${command}\n}; echo "@@E${n}:$?""@@"\n`);
    const begin = await this.waitFor(new RegExp(`@@B${n}@@\\r?\\n`), timeoutMs, from);
    const startAt = from + (begin.index ?? 0) + begin[0].length;
    const end = await this.waitFor(new RegExp(`@@E${n}:(\\d+)@@`), timeoutMs, startAt);
    const output = this.output.slice(startAt, startAt + (end.index ?? 0)).replace(/\r/g, '');
    return { output: output.replace(/\n$/, ''), status: Number(end[1]) };
  }

  /** Runs a command that must succeed; returns its output. */
  async check(command: string, timeoutMs = 60_000): Promise<string> {
    const { output, status } = await this.run(command, timeoutMs);
    if (status !== 0) throw new Error(`${this.options.name ?? 'vm'}: \`${command}\` exited ${status}:\n${output}`);
    return output;
  }

  /** Cuts the power. */
  async kill(): Promise<void> {
    if (!this.process || this.isExited) return;
    this.process.kill('SIGKILL');
    await this.exited;
  }

  /** Clean shutdown through the console, with a hard stop if it takes too long. */
  async shutdown(timeoutMs = 60_000): Promise<void> {
    if (!this.process || this.isExited) return;
    this.send('systemctl poweroff\n');
    const stopped = this.exited;
    const timer = setTimeout(() => void this.kill(), timeoutMs);
    await stopped;
    clearTimeout(timer);
  }
}
