#!/usr/bin/env node
import { Command } from 'commander';
import { TOOL_VERSION } from '../version.js';
import { buildCommand } from './build-command.js';
import { doctorCommand } from './doctor-command.js';

const program = new Command('pi-image')
  .description('Build tuned Debian / Raspberry Pi OS images for CPU-only LLM inference clusters')
  .version(TOOL_VERSION)
  .showHelpAfterError()
  .addCommand(buildCommand())
  .addCommand(doctorCommand());

await program.parseAsync(process.argv);
