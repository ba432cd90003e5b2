import { Command } from 'commander';
import type { EmulatedCluster } from '../emulate/cluster.js';
import { DEFAULT_API_PORT as NODE_API_PORT, OTA_PUSH_PORT } from '../../shared/ports.js';
import { Writable } from 'node:stream';
import { JsonReporter, silentReporter, StatusLine } from '../progress.js';
import { reportError } from './report-error.js';
import { PiImageError } from '../errors.js';

/** Polls each node's forwarded API port (from the host, not inside the nodes) until one root reports ready. */
async function waitForRoot(ports: number[], timeoutMs: number, allExited: Promise<unknown>): Promise<{ node: number; url: string } | undefined> {
  let exited = false;
  void allExited.then(() => (exited = true));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited) {
    for (const [i, port] of ports.entries()) {
      const url = `http://127.0.0.1:${port}`;
      const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) })
        .then((r) => (r.ok ? (r.json() as Promise<{ ready?: boolean }>) : undefined))
        .catch(() => undefined);
      if (health?.ready) return { node: i + 1, url };
    }
    await new Promise((r) => setTimeout(r, 3000));
  }
  return undefined;
}

async function askOnce(url: string, prompt: string): Promise<{ content: string; finishReason: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: prompt }], max_tokens: 32 }),
  });
  const body = (await res.json()) as { choices?: { message: { content: string }; finish_reason: string }[]; error?: { message: string } };
  if (!res.ok || !body.choices?.[0]) throw new PiImageError(`the cluster answered ${res.status}: ${body.error?.message ?? 'no choices'}`);
  const { message, finish_reason: finishReason } = body.choices[0];
  return { content: message.content, finishReason };
}

function wholeNumber(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new PiImageError(`${flag} must be a whole number from ${min} to ${max}, not "${value}"`);
  return n;
}

export function emulateCommand(): Command {
  return new Command('emulate')
    .description('Boot N nodes from one qemu-board image on a private virtual LAN (no host network) and keep them running until Ctrl-C')
    .argument('<image>', 'a .img built with --board qemu')
    .option('--nodes <n>', 'how many nodes', '3')
    .option('--cpus <n>', 'virtual CPUs per node', '2')
    .option('--memory <MiB>', 'memory per node', '1024')
    .option('--api-port <port>', `first host port forwarded to a node's port ${NODE_API_PORT} (node i gets port + i - 1; its OTA push port ${OTA_PUSH_PORT} is that + 1000)`, '18080')
    .option('--console <n>', 'stream node n\'s serial console')
    .option('--ask <prompt>', 'once the cluster serves, send this chat prompt to its API, print the answer and stop every node')
    .option('--timeout <minutes>', 'give up when no node serves within this time', '45')
    .option('--json', 'print NDJSON events on stdout instead of the status line: node (a boot milestone), lan, serving, answer, error')
    .action(async (image: string, options: { nodes: string; cpus: string; memory: string; apiPort: string; console?: string; ask?: string; timeout: string; json?: boolean }) => {
      const stage = new Map<number, string>();
      const reporter = options.json ? new JsonReporter(false) : silentReporter;
      // Redrawn in place on a terminal; one plain line per change on a file or pipe; nothing with --json.
      const status = new StatusLine(options.json ? new Writable({ write: (_c, _e, done) => done() }) : process.stderr);
      const show = () => status.show([...stage.entries()].map(([i, s]) => `node${i + 1}: ${s}`).join('  '));
      const logs = new Map<number, string>();
      let cluster: EmulatedCluster | undefined;
      let starting: Promise<EmulatedCluster> | undefined;
      let stopping = false;
      const stop = async () => {
        if (stopping) return status.println('still stopping the nodes…');
        stopping = true;
        status.println('stopping the nodes…');
        // Interrupted while the disks are still being copied: let that finish, then undo it all.
        await (cluster ?? (await starting?.catch(() => undefined)))?.stop();
        process.exit(130);
      };
      // Listening for good (not once): the exit hook of the process runner (execa, under
      // tools/run.ts) re-raises a signal nobody else listens for, which would kill this
      // process before the LAN is taken down.
      process.on('SIGINT', () => void stop());
      process.on('SIGTERM', () => void stop());
      try {
        const nodes = wholeNumber(options.nodes, '--nodes', 1, 8);
        const cpus = wholeNumber(options.cpus, '--cpus', 1, 8);
        const memoryMib = wholeNumber(options.memory, '--memory', 512, 16384);
        const firstApiPort = wholeNumber(options.apiPort, '--api-port', 1024, 65535 - 1000 - nodes + 1);
        const timeoutMinutes = wholeNumber(options.timeout, '--timeout', 1, 24 * 60);
        const consoleNode = options.console === undefined ? undefined : wholeNumber(options.console, '--console', 1, nodes);
        if (consoleNode !== undefined && options.json) throw new PiImageError('--console writes a console to stdout, where --json writes its events', 'use one of them');
        const { BOOT_MILESTONES, startCluster } = await import('../emulate/cluster.js');
        starting = startCluster({
          image,
          nodes,
          cpus,
          memoryMib,
          firstApiPort,
          // The image boots `quiet`: have systemd print its progress on the console, where the
          // milestones are read from (the tests leave it off: it would mix with their commands).
          append: ['systemd.show_status=true'],
          onOutput: (i, text) => {
            if (consoleNode === i + 1) process.stdout.write(text);
            const log = (logs.get(i) ?? '') + text;
            logs.set(i, log.slice(-4096));
            const reached = BOOT_MILESTONES.filter(([re]) => re.test(log)).at(-1)?.[1];
            if (reached && reached !== stage.get(i)) {
              stage.set(i, reached);
              reporter.emit({ type: 'node', node: i + 1, milestone: reached });
              show();
            }
          },
        });
        cluster = await starting;
        for (let i = 0; i < cluster.vms.length; i++) stage.set(i, 'starting');
        show();
        reporter.emit({ type: 'lan', namespace: cluster.lan.namespace, apiPorts: cluster.apiPorts });
        status.println(`${cluster.vms.length} nodes on a private LAN (network namespace ${cluster.lan.namespace}); node i's port ${NODE_API_PORT} is 127.0.0.1:${cluster.apiPorts[0]}…${cluster.apiPorts.at(-1)}. Ctrl-C stops them.`);
        const serving = await waitForRoot(cluster.apiPorts, timeoutMinutes * 60_000, Promise.all(cluster.vms.map((vm) => vm.exited)));
        if (serving === undefined) throw new PiImageError(`no node served within ${timeoutMinutes} minutes`, 'watch a node with --console <n> and run `pi-node status` there');
        reporter.emit({ type: 'serving', url: `${serving.url}/v1`, root: serving.node });
        status.println(`cluster serving: ${serving.url}/v1 (OpenAI-compatible; root is node${serving.node})`);
        if (options.ask !== undefined) {
          const answer = await askOnce(serving.url, options.ask);
          status.done();
          reporter.emit({ type: 'answer', ...answer });
          // The answer alone on stdout (the demo model's sentence, say); a note only when it was cut short.
          if (!options.json) process.stdout.write(`${answer.content}\n${answer.finishReason === 'stop' ? '' : `(finish_reason: ${answer.finishReason})\n`}`);
          await cluster.stop();
          return;
        }
        await Promise.all(cluster.vms.map((vm) => vm.exited));
      } catch (e) {
        status.done();
        reportError(e, reporter);
        await cluster?.stop();
        process.exitCode = 1;
      }
    });
}
