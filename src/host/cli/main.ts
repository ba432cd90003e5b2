#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { TOOL_VERSION } from '../version.js';
import { bootconfigCommand } from './bootconfig-command.js';
import { buildCommand } from './build-command.js';
import { doctorCommand } from './doctor-command.js';
import { eepromCommand } from './eeprom-command.js';
import { emulateCommand } from './emulate-command.js';
import { initCommand } from './init-command.js';
import { flashCommand } from './flash-command.js';
import { leversCommand } from './levers-command.js';
import { tinyModelCommand } from './tiny-model-command.js';
import { keysCommand, modelCommand, otaCommand, runtimeCommand } from './ota-command.js';

const program = new Command('pi-image')
  .description('Build tuned Debian / Raspberry Pi OS images for CPU-only LLM inference clusters')
  .version(TOOL_VERSION)
  .showHelpAfterError()
  .addCommand(initCommand())
  .addCommand(buildCommand())
  .addCommand(doctorCommand())
  .addCommand(eepromCommand())
  .addCommand(bootconfigCommand())
  .addCommand(leversCommand())
  .addCommand(emulateCommand())
  .addCommand(tinyModelCommand())
  .addCommand(flashCommand())
  .addCommand(keysCommand())
  .addCommand(runtimeCommand())
  .addCommand(otaCommand())
  .addCommand(modelCommand());

// Usage mistakes (an unknown option or command, a missing argument) exit 2, failures 1, as pi-node does.
const everyCommand = (c: Command): Command[] => [c, ...c.commands.flatMap(everyCommand)];
for (const c of everyCommand(program)) c.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (!(e instanceof CommanderError)) throw e;
  process.exitCode = ['commander.helpDisplayed', 'commander.version'].includes(e.code) ? 0 : 2;
}
