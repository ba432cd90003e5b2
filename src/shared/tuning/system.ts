import { join } from 'node:path';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The command is not installed. */
  missing: boolean;
}

/**
 * What applying and checking levers needs of the machine, passed in so the lever kinds stay
 * free of I/O: pi-node passes the real machine, tests a fake one.
 */
export interface NodeSystem {
  /** A file's text without surrounding white space, or undefined when it cannot be read. */
  readText(path: string): Promise<string | undefined>;
  /** Undefined when written, else why not (an errno code such as EINVAL). */
  writeText(path: string, value: string): Promise<string | undefined>;
  /** Sorted entry names; empty when the directory cannot be read. */
  listDir(path: string): Promise<string[]>;
  run(command: string, args: string[]): Promise<CommandResult>;
  sleep(ms: number): Promise<void>;
  /** Physical Ethernet interfaces (no bridges, veths or tunnels). */
  physicalNics(): Promise<string[]>;
  /** The interface's kernel driver, "unknown" when there is none. */
  nicDriver(nic: string): Promise<string>;
  /** The interrupt lines that carry the interface's traffic. */
  nicIrqs(nic: string): Promise<number[]>;
  /** The sysfs directories of the interface's receive queues. */
  rxQueues(nic: string): Promise<string[]>;
}

export const SYS_CLASS_NET = '/sys/class/net';

export const nicPath = (nic: string, file: string) => join(SYS_CLASS_NET, nic, file);
