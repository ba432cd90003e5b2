import { Command } from 'commander';
import { BOOT_MILESTONES, NODE_API_PORT, startCluster } from '../emulate/cluster.js';
import { silentReporter } from '../progress.js';
import { reportError } from './report-error.js';

export function emulateCommand(): Command {
  return new Command('emulate')
    .description('Boot N nodes from one qemu-board image on a private virtual LAN (no host network) and keep them running until Ctrl-C')
    .argument('<image>', 'a .img built with --board qemu')
    .option('--nodes <n>', 'how many nodes', '3')
    .option('--cpus <n>', 'virtual CPUs per node', '2')
    .option('--memory <MiB>', 'memory per node', '1024')
    .option('--api-port <port>', `first host port forwarded to a node's port ${NODE_API_PORT} (node i gets port + i - 1)`, '18080')
    .option('--console <n>', 'stream node n\'s serial console')
    .action(async (image: string, options: { nodes: string; cpus: string; memory: string; apiPort: string; console?: string }) => {
      const stage = new Map<number, string>();
      const show = () => process.stderr.write(`\r\x1b[2K${[...stage.entries()].map(([i, s]) => `node${i + 1}: ${s}`).join('  ')}`);
      const logs = new Map<number, string>();
      let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
      const stop = async () => {
        process.stderr.write('\nstopping the nodes…\n');
        await cluster?.stop();
        process.exit(130);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      try {
        cluster = await startCluster({
          image,
          nodes: Number(options.nodes),
          cpus: Number(options.cpus),
          memoryMib: Number(options.memory),
          firstApiPort: Number(options.apiPort),
          onOutput: (i, text) => {
            if (options.console && Number(options.console) === i + 1) process.stdout.write(text);
            const log = (logs.get(i) ?? '') + text;
            logs.set(i, log.slice(-4096));
            const reached = BOOT_MILESTONES.filter(([re]) => re.test(log)).at(-1)?.[1];
            if (reached && reached !== stage.get(i)) {
              stage.set(i, reached);
              show();
            }
          },
        });
        for (let i = 0; i < cluster.vms.length; i++) stage.set(i, 'starting');
        show();
        process.stderr.write(`\n${cluster.vms.length} nodes on a private LAN; node i's port ${NODE_API_PORT} is 127.0.0.1:${cluster.apiPorts[0]}…${cluster.apiPorts.at(-1)}. Ctrl-C stops them.\n`);
        await Promise.all(cluster.vms.map((vm) => vm.exited));
      } catch (e) {
        reportError(e, silentReporter);
        await cluster?.stop();
        process.exitCode = 1;
      }
    });
}
