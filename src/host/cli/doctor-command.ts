import { Command } from 'commander';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('Check this machine for what building and testing images needs')
    .option('--host', 'check the build host (the only check so far; the node checks itself with pi-node doctor)')
    .option('--json', 'print the checks as JSON')
    .action(async (options: { host?: boolean; json?: boolean }, command: Command) => {
      if (!options.host) command.error('error: say what to check: --host (the build host; a node checks itself with `pi-node doctor`)');
      const { checkHost } = await import('../tools/host-tools.js');
      const checks = await checkHost();
      if (options.json) {
        process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
      } else {
        for (const c of checks) {
          process.stdout.write(`${c.ok ? 'ok     ' : 'MISSING'}  ${c.name.padEnd(18)} ${c.detail}${c.neededFor === 'test' ? ' [tests, emulate]' : ''}\n`);
          if (c.fix) process.stdout.write(`         fix: ${c.fix}\n`);
        }
      }
      if (checks.some((c) => !c.ok)) process.exitCode = 1;
    });
}
