#!/usr/bin/env node
import { Command } from 'commander';
import { TOOL_VERSION } from '../version.js';
import { bootconfigCommand } from './bootconfig-command.js';
import { buildCommand } from './build-command.js';
import { doctorCommand } from './doctor-command.js';
import { eepromCommand } from './eeprom-command.js';
import { emulateCommand } from './emulate-command.js';
import { leversCommand } from './levers-command.js';
import { tinyModelCommand } from './tiny-model-command.js';

const program = new Command('pi-image')
  .description('Build tuned Debian / Raspberry Pi OS images for CPU-only LLM inference clusters')
  .version(TOOL_VERSION)
  .showHelpAfterError()
  .addCommand(buildCommand())
  .addCommand(doctorCommand())
  .addCommand(eepromCommand())
  .addCommand(bootconfigCommand())
  .addCommand(leversCommand())
  .addCommand(emulateCommand())
  .addCommand(tinyModelCommand());

await program.parseAsync(process.argv);
