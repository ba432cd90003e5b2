// pi-node: the on-device agent. Bundled into one file (dist/node/pi-node.cjs) for the image.
import { applyTuning } from './apply-tuning.js';
import { engineMemory, formatDoctor, formatEngineMemory, runDoctor } from './doctor.js';
import { loadNodeSettings, loadTuningState } from './settings.js';
import { physicalNics } from './nic.js';
import { Agent } from './agent/agent.js';
import { fetchStatus, formatStatus } from './agent/status.js';
import { firstBoot } from './first-boot.js';

const USAGE = `usage: pi-node <command>

commands:
  doctor [--json]            compare every lever of the tuning profile with this node's real state,
                             and the engine's resident memory with the build's budget;
                             exits 1 if any lever drifted or the engine is over its budget
  apply-tuning --nic <if|all>
                             apply the NIC levers to one or every physical Ethernet interface
                             (run at boot by pi-image-nic-tuning.service)
  apply-tuning --cpu         apply the CPU governor lever (run at boot by pi-image-cpu-tuning.service)
  first-boot                 once per card: node id, hostname, login user, cluster secret moved off
                             the boot partition; at any boot, the card's identity files (pi-image
                             flash --node, or Raspberry Pi Imager's cloud-init files) applied and
                             wiped off it (run at every boot by pi-image-first-boot.service)
  agent                      the cluster agent: discovery, role, engine, firewall, API front
                             (run by pi-image-agent.service)
  status [--json]            node id, role, peers and their state, engine state, model
  help                       this text
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const log = (line: string) => process.stdout.write(`${line}\n`);
  switch (command) {
    case 'doctor': {
      const reports = await runDoctor(await loadTuningState());
      const memory = await engineMemory((await loadNodeSettings()).engineMemoryMib);
      process.stdout.write(args.includes('--json') ? `${JSON.stringify({ levers: reports, engineMemory: memory }, null, 2)}\n` : formatDoctor(reports) + formatEngineMemory(memory));
      return reports.some((r) => r.status === 'drift') || memory.status === 'over' ? 1 : 0;
    }
    case 'apply-tuning': {
      const state = await loadTuningState();
      const nicAt = args.indexOf('--nic');
      const nic = nicAt >= 0 ? args[nicAt + 1] : undefined;
      if (nic === 'all') for (const each of await physicalNics()) await applyTuning(state, { nic: each }, log);
      else if (nic) await applyTuning(state, { nic }, log);
      else if (args.includes('--cpu')) await applyTuning(state, { cpu: true }, log);
      else {
        process.stderr.write(USAGE);
        return 2;
      }
      return 0;
    }
    case 'first-boot':
      await firstBoot(await loadNodeSettings(), log);
      return 0;
    case 'agent': {
      const agent = new Agent(await loadNodeSettings(), log);
      await agent.start();
      // Serves until systemd stops it; on the way out it tells its peers, which close their engine ports to it.
      // The API front and the sockets keep the event loop alive: leave explicitly.
      process.once('SIGTERM', () => void agent.stop().finally(() => process.exit(0)));
      return new Promise<number>(() => undefined);
    }
    case 'status': {
      const status = await fetchStatus();
      process.stdout.write(args.includes('--json') ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
      return 0;
    }
    case 'help':
    case '--help':
    case undefined:
      process.stdout.write(USAGE);
      return command ? 0 : 2;
    default:
      process.stderr.write(`pi-node: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`pi-node: ${(error as Error).message}\n`);
    process.exitCode = 1;
  },
);
