import { connect, type Socket } from 'node:net';

/** What a raw HTTP/1.1 exchange got back: informational (1xx) responses skipped and counted. */
export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  informational: number[];
  /** From the first byte sent to the connection's close. */
  elapsedMs: number;
}

export interface RawExchange {
  /** Request line and headers, without the blank line that ends them. */
  head?: string;
  body?: string;
  /** Sends the head, then the body one byte every `trickleMs` ms. */
  trickleMs?: number;
  /** Shuts down the sending side (FIN) once everything is written, keeping the receiving side open. */
  halfClose?: boolean;
  /** Gives up (and destroys the socket) after this long. */
  timeoutMs: number;
  /** Sends the head as it is, with no blank line: a request whose headers never end. */
  unfinishedHead?: boolean;
}

export const chatHead = (port: number, contentLength: number, extra = '') =>
  `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\nConnection: close${extra}`;

/** Parses what came back; undefined when there was no complete final response. */
export function parseResponse(raw: Buffer): Omit<RawAnswer, 'elapsedMs'> | undefined {
  let rest = raw.toString('latin1');
  const informational: number[] = [];
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
    if (!status) return undefined;
    rest = rest.slice(end + 4);
    if (status >= 100 && status < 200) {
      informational.push(status);
      continue;
    }
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const at = l.indexOf(':');
      headers[l.slice(0, at).trim().toLowerCase()] = l.slice(at + 1).trim();
    }
    let body = rest;
    if (headers['transfer-encoding'] === 'chunked') {
      body = '';
      for (;;) {
        const eol = rest.indexOf('\r\n');
        if (eol < 0) return undefined;
        const size = parseInt(rest.slice(0, eol), 16);
        if (size === 0) break;
        body += rest.slice(eol + 2, eol + 2 + size);
        rest = rest.slice(eol + 2 + size + 2);
      }
    } else if (headers['content-length'] !== undefined) {
      if (Buffer.byteLength(rest, 'latin1') < Number(headers['content-length'])) return undefined;
      body = rest.slice(0, Number(headers['content-length']));
    }
    return { status, headers, body: Buffer.from(body, 'latin1').toString('utf8'), informational };
  }
}

/**
 * Talks HTTP over a bare TCP socket, to do what fetch cannot: a body shorter than its
 * Content-Length, a trickled body, headers that never end, a half-closed client. Resolves
 * with the answer, or with 'closed' / 'timeout' when none came.
 */
export function rawExchange(url: string, x: RawExchange): Promise<RawAnswer | 'closed' | 'timeout'> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const start = performance.now();
    const received: Buffer[] = [];
    let settled = false;
    let trickle: NodeJS.Timeout | undefined;
    const socket: Socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
    const finish = (why?: 'timeout') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(trickle);
      socket.destroy();
      const parsed = parseResponse(Buffer.concat(received));
      if (parsed) resolve({ ...parsed, elapsedMs: performance.now() - start });
      else resolve(why ?? 'closed');
    };
    const timer = setTimeout(() => finish('timeout'), x.timeoutMs);
    socket.on('data', (d: Buffer) => {
      received.push(d);
      // Some answers leave the connection open (keep-alive): a complete answer is enough.
      if (parseResponse(Buffer.concat(received)) && !x.halfClose) finish();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => finish());
    socket.on('connect', () => {
      const body = Buffer.from(x.body ?? '');
      socket.write(x.head === undefined ? '' : x.unfinishedHead ? x.head : `${x.head}\r\n\r\n`);
      if (x.trickleMs) {
        let at = 0;
        trickle = setInterval(() => {
          if (at < body.length && !socket.destroyed) socket.write(body.subarray(at, ++at));
          else clearInterval(trickle);
        }, x.trickleMs);
        return;
      }
      if (body.length) socket.write(body);
      if (x.halfClose) socket.end();
    });
  });
}
