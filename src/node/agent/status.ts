import { connect, createServer } from 'node:net';
import { rm } from 'node:fs/promises';
import type { Counters, EngineState } from '../../shared/discovery-protocol.js';
import type { NodeSettings } from '../../shared/node-settings.js';
import { STATUS_SOCKET } from '../../shared/node-paths.js';
import type { Role } from '../cluster/roles.js';
import type { AgentState } from './controller.js';

export interface AgentStatus {
  node: string;
  hostname: string;
  cluster: string;
  size: number;
  configured: NodeSettings['role'];
  role: Role;
  root?: string;
  /** The failover term (0 until a lost root was replaced), and the root being waited for, if any. */
  term: number;
  waitingFor?: string;
  addresses: string[];
  engine: { name: string; state: EngineState; command?: string; workers?: string[]; detail?: string; crashes: number; lastCrash?: string };
  model: string | null;
  api?: { port: number; url: string };
  peers: { node: string; hostname: string; boot: string; role: Role; root?: string; engine: EngineState; addresses: string[] }[];
  rejected: Omit<Counters, 'accepted'>;
}

/** What `pi-node status` shows, from the agent's state. */
export function agentStatus(state: AgentState, settings: NodeSettings, extra: { engineCommand?: string; counters: Counters }): AgentStatus {
  return {
    node: state.node,
    hostname: state.hostname,
    cluster: state.cluster,
    size: state.size,
    configured: state.configured,
    role: state.role,
    root: state.root,
    term: state.term,
    ...(state.grace ? { waitingFor: state.grace } : {}),
    addresses: state.addresses,
    engine: {
      name: settings.engine.name,
      state: state.engine.state,
      command: extra.engineCommand,
      ...(state.role === 'root' ? { workers: state.workers.map((w) => `${w.hostname} ${w.addresses[0]}`) } : {}),
      detail: state.engine.detail,
      crashes: state.crashes.count,
      ...(state.crashes.last ? { lastCrash: state.crashes.last } : {}),
    },
    model: settings.model?.path ?? null,
    ...(state.apiFront ? { api: { port: settings.cluster.apiPort, url: `http://${settings.cluster.name}.local:${settings.cluster.apiPort}/v1` } } : {}),
    peers: Object.values(state.peers)
      .sort((a, b) => a.node.localeCompare(b.node))
      .map((p) => ({ node: p.node, hostname: p.hostname, boot: p.boot, role: p.role, root: p.root, engine: p.engine, addresses: p.addresses })),
    rejected: (({ accepted: _accepted, ...rejected }) => rejected)(extra.counters),
  };
}

/** `pi-node status` asks over a unix socket: live counters, and no file written per event. */
export async function serveStatus(status: () => AgentStatus, socketPath = STATUS_SOCKET): Promise<void> {
  await rm(socketPath, { force: true });
  const server = createServer((socket) => socket.end(`${JSON.stringify(status(), null, 2)}\n`));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
}

/** The running agent's status, asked over its unix socket. */
export function fetchStatus(socketPath = STATUS_SOCKET): Promise<AgentStatus> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AgentStatus);
      } catch (e) {
        reject(e);
      }
    });
    socket.on('error', (e) => reject(new Error(`the agent is not running (${socketPath}: ${(e as NodeJS.ErrnoException).code}); see systemctl status pi-image-agent`)));
  });
}

export function formatStatus(s: AgentStatus): string {
  const pad = (t: string, n: number) => t.padEnd(n);
  const lines = [
    `node      ${s.node} (${s.hostname}) ${s.addresses.join(' ')}`,
    `cluster   ${s.cluster}, ${s.size} node(s)`,
    `role      ${s.role}${s.root && s.role === 'worker' ? ` of ${s.root}` : ''} (built as ${s.configured}${s.term ? `; failover term ${s.term}` : ''})${s.waitingFor ? `; root ${s.waitingFor} missing, waiting the grace period` : ''}`,
    `engine    ${s.engine.name}: ${s.engine.state}${s.engine.detail ? ` (${s.engine.detail})` : ''}${s.engine.crashes ? `; ${s.engine.crashes} crash(es), last ${s.engine.lastCrash}` : ''}`,
    ...(s.engine.command ? [`          ${s.engine.command}`] : []),
    ...(s.engine.workers ? [`workers   ${s.engine.workers.length ? s.engine.workers.join(', ') : 'none'}`] : []),
    `model     ${s.model ?? 'none'}`,
    ...(s.api ? [`api       ${s.api.url} (port ${s.api.port})`] : []),
    `peers     ${s.peers.length ? '' : 'none heard yet'}`,
    ...(s.peers.length ? [`  ${pad('NODE', 18)}${pad('HOSTNAME', 22)}${pad('ROLE', 11)}${pad('ENGINE', 10)}ADDRESSES`] : []),
    ...s.peers.map((p) => `  ${pad(p.node, 18)}${pad(p.hostname, 22)}${pad(p.role, 11)}${pad(p.engine, 10)}${p.addresses.join(' ')}`),
    `rejected  ${s.rejected.badTag} bad tag (wrong secret), ${s.rejected.replayed} replayed, ${s.rejected.unproven} unproven (answered), ${s.rejected.malformed} malformed, ${s.rejected.otherCluster} other cluster, ${s.rejected.flood} flood, ${s.rejected.tooMany} over the peer limit`,
  ];
  return `${lines.join('\n')}\n`;
}
