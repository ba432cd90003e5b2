import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { KeyObject } from 'node:crypto';
import { checkOwnerAuthorization } from '../../shared/ota/owner-auth.js';
import type { Member, UpdateCoordinator } from './coordinator.js';
import { PushRefused } from './coordinator.js';
import { handleCommand, type NodeUpdater, type OtaCommand, type UpdateKind } from './node-updater.js';

/*
 * Two small HTTP servers of the agent. OTA_PORT, between nodes (the firewall admits members
 * only): the root serves bundles with range requests, every node takes the root's commands,
 * each signed with the cluster secret (HMAC-SHA256 over the body). OTA_PUSH_PORT, for the
 * owner: a one-time nonce, then `push` and `status` signed with an update key.
 */

const MAC_HEADER = 'x-pi-image-mac';
const mac = (secret: Buffer, body: string) => createHmac('sha256', secret).update(`pi-image-ota-command\n${body}`).digest('hex');

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function memberServer(opts: { secret: Buffer; updaters: Record<UpdateKind, NodeUpdater>; coordinator: () => UpdateCoordinator | undefined; log: (line: string) => void }): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    void (async () => {
      const bundle = /^\/ota\/bundle\/([0-9a-f]{64})$/.exec(path);
      if (bundle && req.method === 'GET') return serveBundle(req, res, opts.coordinator(), bundle[1] as string);
      if (path === '/ota/command' && req.method === 'POST') {
        const body = await readBody(req, 2 << 20);
        const given = Buffer.from(String(req.headers[MAC_HEADER] ?? ''), 'hex');
        const want = Buffer.from(mac(opts.secret, body), 'hex');
        if (given.length !== want.length || !timingSafeEqual(given, want)) return send(res, 401, { error: 'the command is not signed with this cluster secret' });
        try {
          return send(res, 200, await handleCommand(opts.updaters, JSON.parse(body) as OtaCommand));
        } catch (e) {
          return send(res, 500, { error: (e as Error).message });
        }
      }
      send(res, 404, { error: `no route ${req.method} ${path}` });
    })().catch((e: unknown) => {
      opts.log(`ota: ${(e as Error).message}`);
      if (!res.headersSent) send(res, 500, { error: (e as Error).message });
      else res.destroy();
    });
  });
}

/** A bundle the root holds, whole or from a byte on (`Range: bytes=N-`), so an interrupted fetch resumes. */
async function serveBundle(req: IncomingMessage, res: ServerResponse, coordinator: UpdateCoordinator | undefined, sha256: string): Promise<void> {
  const path = coordinator?.bundlePath(sha256);
  const size = path ? await stat(path).then((s) => s.size, () => -1) : -1;
  if (!path || size < 0) return send(res, 404, { error: `no bundle ${sha256} here` });
  const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
  const start = range ? Number(range[1]) : 0;
  if (start > size) return send(res, 416, { error: `the bundle has ${size} bytes` });
  res.writeHead(range ? 206 : 200, { 'content-type': 'application/octet-stream', 'content-length': size - start, ...(range ? { 'content-range': `bytes ${start}-${size - 1}/${size}` } : {}), 'accept-ranges': 'bytes' });
  if (start === size) return void res.end();
  createReadStream(path, { start }).pipe(res);
}

/** The root's command to one member, signed with the cluster secret; no time bound unless given (staging a large bundle takes long). */
export function sendCommand(secret: Buffer, member: Member, port: number, command: OtaCommand, timeoutMs?: number): Promise<Record<string, unknown>> {
  const body = JSON.stringify(command);
  return new Promise((resolve, reject) => {
    const req = request({ host: member.address, port, method: 'POST', path: '/ota/command', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [MAC_HEADER]: mac(secret, body) } }, (res) => {
      void readBody(res, 1 << 20).then((text) => {
        let answer: Record<string, unknown>;
        try {
          answer = JSON.parse(text) as Record<string, unknown>;
        } catch {
          return reject(new Error(`${member.node} answered ${res.statusCode} without JSON`));
        }
        if (res.statusCode !== 200) reject(new Error(String(answer.error ?? `HTTP ${res.statusCode}`)));
        else resolve(answer);
      }, reject);
    });
    if (timeoutMs) req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e) => reject(new Error(`${member.node} (${member.address}): ${e.message}`)));
    req.end(body);
  });
}

/** The owner's side: a nonce, then signed push and status. */
export function ownerServer(opts: {
  trusted: () => Promise<KeyObject[]>;
  coordinator: () => UpdateCoordinator | undefined;
  /** This node's view for `ota status`: its role and, on the root, every member's runtime versions. */
  status: () => Promise<Record<string, unknown>>;
  log: (line: string) => void;
}): Server {
  const nonces = new Map<string, number>();
  const takeNonce = (nonce: string) => {
    const issued = nonces.get(nonce);
    nonces.delete(nonce);
    return issued !== undefined && Date.now() - issued < 5 * 60_000;
  };
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://node');
    void (async () => {
      if (url.pathname === '/ota/challenge' && req.method === 'GET') {
        for (const [n, t] of nonces) if (Date.now() - t > 5 * 60_000) nonces.delete(n);
        if (nonces.size > 256) return send(res, 429, { error: 'too many open challenges' });
        const nonce = randomBytes(24).toString('base64url');
        nonces.set(nonce, Date.now());
        return send(res, 200, { nonce });
      }
      const auth = checkOwnerAuthorization(req.headers.authorization, req.method ?? 'GET', url.pathname, await opts.trusted(), takeNonce);
      if ('problem' in auth) {
        req.resume();
        return send(res, 401, { error: auth.problem });
      }
      if (url.pathname === '/ota/status' && req.method === 'GET') return send(res, 200, await opts.status());
      if (url.pathname === '/ota/push' && req.method === 'POST') {
        const coordinator = opts.coordinator();
        if (!coordinator) {
          req.resume();
          return send(res, 421, { error: 'this node is not the root: push to the root (pi-image ota status names it)' });
        }
        const length = Number(req.headers['content-length']);
        try {
          const record = await coordinator.push(req, { allowDowngrade: url.searchParams.get('allow-downgrade') === '1', ...(Number.isFinite(length) ? { contentLength: length } : {}) });
          opts.log(`ota: update ${record.id} pushed with key ${auth.key}`);
          return send(res, 202, record);
        } catch (e) {
          req.resume();
          if (e instanceof PushRefused) return send(res, e.status, { error: e.message });
          throw e;
        }
      }
      send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    })().catch((e: unknown) => {
      opts.log(`ota: ${(e as Error).message}`);
      if (!res.headersSent) send(res, 500, { error: (e as Error).message });
      else res.destroy();
    });
  });
}
