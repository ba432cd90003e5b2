import { createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request } from 'node:http';
import { PiImageError } from '../errors.js';
import { OTA_PUSH_PORT } from '../../shared/ports.js';
import { ownerAuthorization } from '../../shared/ota/owner-auth.js';

/** The root's owner endpoint: `host` or `host:port` (OTA_PUSH_PORT unless given). */
export function clusterEndpoint(address: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(address.trim());
  if (!m) throw new PiImageError(`--cluster ${JSON.stringify(address)} is not a host or host:port`, 'give the root\'s address, e.g. --cluster 192.168.1.20 or --cluster pi-cluster.local');
  const port = m[2] ? Number(m[2]) : OTA_PUSH_PORT;
  if (port < 1 || port > 65535) throw new PiImageError(`--cluster ${address}: port ${port} is out of range`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function call(endpoint: { host: string; port: number }, method: string, path: string, opts: { headers?: Record<string, string | number>; body?: NodeJS.ReadableStream; timeoutMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: endpoint.host, port: endpoint.port, method, path, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> });
        } catch {
          reject(new PiImageError(`${endpoint.host}:${endpoint.port} answered ${res.statusCode} without JSON: is it a pi-image node?`));
        }
      });
    });
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`no answer within ${(opts.timeoutMs ?? 30_000) / 1000} s`)));
    req.on('error', (e) => reject(new PiImageError(`cannot reach ${endpoint.host}:${endpoint.port}: ${e.message}`, 'is the cluster on, and is this its root? (ota status works on any node and names the root)')));
    if (opts.body) opts.body.pipe(req);
    else req.end();
  });
}

/** One request signed with the update key, over a fresh nonce. */
async function signed(endpoint: { host: string; port: number }, key: KeyObject, method: string, path: string, opts: { query?: string; headers?: Record<string, string | number>; body?: NodeJS.ReadableStream; timeoutMs?: number } = {}): Promise<Answer> {
  const challenge = await call(endpoint, 'GET', '/ota/challenge');
  const nonce = challenge.body.nonce;
  if (challenge.status !== 200 || typeof nonce !== 'string') throw new PiImageError(`${endpoint.host} gave no challenge (${challenge.status}: ${String(challenge.body.error ?? '')})`);
  const authorization = ownerAuthorization(key, createPublicKey(key), method, path, nonce);
  const answer = await call(endpoint, method, `${path}${opts.query ?? ''}`, { ...opts, headers: { ...opts.headers, authorization } });
  if (answer.status === 401) throw new PiImageError(`${endpoint.host} refused the update key: ${String(answer.body.error)}`, 'use a key whose public half the image lists in ota.trusted_keys');
  return answer;
}

export async function otaStatus(endpoint: { host: string; port: number }, key: KeyObject): Promise<Record<string, unknown>> {
  const answer = await signed(endpoint, key, 'GET', '/ota/status');
  if (answer.status !== 200) throw new PiImageError(`${endpoint.host}: ${String(answer.body.error ?? answer.status)}`);
  return answer.body;
}

/** Sends a bundle to the root; it answers once the bundle is verified (202, the update's record) or refused. */
export async function otaPush(endpoint: { host: string; port: number }, key: KeyObject, bundle: string, opts: { allowDowngrade: boolean }): Promise<Record<string, unknown>> {
  const size = await stat(bundle).then((s) => (s.isFile() ? s.size : -1), () => -1);
  if (size < 0) throw new PiImageError(`${bundle} does not exist or is not a file`);
  const answer = await signed(endpoint, key, 'POST', '/ota/push', {
    query: opts.allowDowngrade ? '?allow-downgrade=1' : '',
    headers: { 'content-type': 'application/octet-stream', 'content-length': size },
    body: createReadStream(bundle),
    timeoutMs: 30 * 60_000,
  });
  if (answer.status === 421) throw new PiImageError(`${endpoint.host} is not the root: ${String(answer.body.error)}`, 'push to the root: `pi-image ota status --cluster <any node>` names it');
  if (answer.status !== 202) throw new PiImageError(`the root refused the bundle: ${String(answer.body.error ?? answer.status)}`);
  return answer.body;
}
