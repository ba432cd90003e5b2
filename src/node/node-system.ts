import type { NodeSystem } from '../shared/tuning/system.js';
import { nicDriver, nicIrqs, physicalNics, rxQueues } from './nic.js';
import { listDir, readText, run, writeText } from './sys.js';

/** This machine, as the lever kinds apply and check it. */
export const nodeSystem: NodeSystem = {
  readText,
  writeText,
  listDir,
  run,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  physicalNics,
  nicDriver,
  nicIrqs,
  rxQueues,
};
