import { connect } from 'node:net';
import { STATUS_SOCKET } from '../../shared/node-paths.js';
import type { AgentStatus } from './agent.js';

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
    `role      ${s.role}${s.root && s.role === 'worker' ? ` of ${s.root}` : ''} (built as ${s.configured})`,
    `engine    ${s.engine.name}: ${s.engine.state}${s.engine.detail ? ` (${s.engine.detail})` : ''}`,
    ...(s.engine.command ? [`          ${s.engine.command}`] : []),
    ...(s.engine.workers ? [`workers   ${s.engine.workers.length ? s.engine.workers.join(', ') : 'none'}`] : []),
    `model     ${s.model ?? 'none'}`,
    ...(s.api ? [`api       ${s.api.url} (port ${s.api.port})`] : []),
    `peers     ${s.peers.length ? '' : 'none heard yet'}`,
    ...(s.peers.length ? [`  ${pad('NODE', 18)}${pad('HOSTNAME', 22)}${pad('ROLE', 11)}${pad('ENGINE', 10)}ADDRESSES`] : []),
    ...s.peers.map((p) => `  ${pad(p.node, 18)}${pad(p.hostname, 22)}${pad(p.role, 11)}${pad(p.engine, 10)}${p.addresses.join(' ')}`),
    `rejected  ${s.rejected.badTag} bad tag (wrong secret), ${s.rejected.replayed} replayed, ${s.rejected.malformed} malformed, ${s.rejected.otherCluster} other cluster`,
  ];
  return `${lines.join('\n')}\n`;
}
