import { describe, expect, it } from 'vitest';
import { RequestQueue } from '../../../../src/node/api/request-queue.js';

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('RequestQueue', () => {
  it('admits one running and maxWaiting more; a place is taken before the body is read', () => {
    const q = new RequestQueue(2);
    const tickets = [q.admit(), q.admit(), q.admit()];
    expect(tickets.every(Boolean)).toBe(true);
    expect(q.depth).toBe(3);
    expect(q.admit()).toBeUndefined();
    tickets[0]?.release();
    expect(q.depth).toBe(2);
    expect(q.admit()).toBeDefined();
  });

  it('runs jobs one at a time, in the order they became ready', async () => {
    const q = new RequestQueue(4);
    const [a, b, c] = [q.admit(), q.admit(), q.admit()];
    const order: string[] = [];
    let finishA!: () => void;
    const ra = a?.run(() => new Promise<void>((r) => { order.push('a'); finishA = r; }));
    await tick();
    // c's body arrived before b's: c goes first.
    const rc = c?.run(async () => void order.push('c'));
    const rb = b?.run(async () => void order.push('b'));
    await tick();
    expect(order).toEqual(['a']);
    finishA();
    await Promise.all([ra, rb, rc]);
    expect(order).toEqual(['a', 'c', 'b']);
    expect(q.depth).toBe(0);
  });

  it('a released ticket leaves the line at once and its job never runs', async () => {
    const q = new RequestQueue(4);
    const [a, b] = [q.admit(), q.admit()];
    let finishA!: () => void;
    const ra = a?.run(() => new Promise<void>((r) => (finishA = r)));
    let ran = false;
    const rb = b?.run(async () => void (ran = true));
    await tick();
    expect(q.depth).toBe(2);
    b?.release();
    expect(q.depth).toBe(1);
    await expect(rb).rejects.toThrow(/left the queue/);
    finishA();
    await ra;
    expect(ran).toBe(false);
    expect(q.depth).toBe(0);
  });

  it('a failing job frees the engine for the next', async () => {
    const q = new RequestQueue(1);
    const [a, b] = [q.admit(), q.admit()];
    await expect(a?.run(async () => { throw new Error('engine gone'); })).rejects.toThrow('engine gone');
    await expect(b?.run(async () => 42)).resolves.toBe(42);
    expect(q.depth).toBe(0);
  });

  it('estimates the wait from the jobs it ran, for Retry-After', async () => {
    const q = new RequestQueue(1);
    expect(q.retryAfterSeconds()).toBeGreaterThanOrEqual(1);
    const t = q.admit();
    await t?.run(() => new Promise((r) => setTimeout(r, 30)));
    expect(q.retryAfterSeconds()).toBe(1);
  });
});
