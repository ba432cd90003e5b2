import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type EmulatedCluster } from '../../src/host/emulate/cluster.js';
import { readPartitionTable } from '../../src/host/disk/partition-table.js';
import { DEMO_SENTENCE, demoGguf } from '../../src/host/model/demo-gguf.js';
import { silentReporter } from '../../src/host/progress.js';
import type { QemuVm } from '../../src/host/emulate/qemu-vm.js';
import type { AgentStatus } from '../../src/node/agent/status.js';
import { QEMU_TEST_FLAGS, REPO, runCli, TEST_CACHE } from '../helpers/cli.js';
import { flash } from '../../src/host/flash/flash.js';
import { parseBmap } from '../../src/host/flash/bmap.js';
import { bmapByteRanges } from '../../src/host/flash/ranges.js';
import { MALFORMED_REQUESTS } from '../helpers/malformed-requests.js';
import { startTimeServer, type TimeServer } from '../helpers/time-server.js';

/**
 * One --role auto image on three emulated nodes assembles into a cluster by
 * itself and serves the tiny demo model with the real llama.cpp over the ggml RPC backend (its
 * answer: DEMO_SENTENCE, as on a single node); a fourth node built with another secret is
 * never admitted.
 */
const work = mkdtempSync(join(tmpdir(), 'pi-image-cluster-it-'));
const SECRET = readFileSync(join(REPO, 'test/fixtures/cluster.secret'), 'utf8').trim();
const INTRUDER = 3;
/** chronyd on the emulated LAN, the nodes' configured time server. */
const TIME_SERVER = '169.254.250.1';
const PROMPT = 'hello pi cluster';
const figures: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  if (figures.length) process.stdout.write(`\ncluster figures:\n  ${figures.join('\n  ')}\n`);
});

describe('cluster of three emulated nodes', () => {
  let cluster: EmulatedCluster;
  let timeServer: TimeServer | undefined;
  let started = 0;
  let rootIndex = -1;
  let rootId = '';
  const machineIds: string[] = [];

  const vm = (i: number): QemuVm => cluster.vms[i] as QemuVm;
  const api = (i: number) => `http://127.0.0.1:${cluster.apiPorts[i]}`;
  const status = async (i: number) => JSON.parse(await vm(i).check('pi-node status --json')) as AgentStatus;
  const workers = () => [0, 1, 2].filter((i) => i !== rootIndex);

  /** Waits for node i's console shell (printed after `from`, e.g. after a reboot) and sets it up. */
  async function loggedIn(i: number, from = 0): Promise<void> {
    await vm(i).waitFor(/root@[\w-]+:~# /, 15 * 60_000, from);
    await vm(i).check('stty -echo; dmesg -n 1; export PAGER=cat SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 TERM=dumb');
  }

  async function healthz(i: number): Promise<Record<string, unknown> | undefined> {
    try {
      const res = await fetch(`${api(i)}/healthz`, { signal: AbortSignal.timeout(5000) });
      return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Waits until one of `candidates` answers /healthz as a ready root with `count` workers (and `also` holds); returns it. */
  async function waitServing(candidates: number[], timeoutMs: number, also: (workers: { node: string; boot: string }[]) => boolean = () => true, count = 2): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const i of candidates) {
        const h = await healthz(i);
        const ready = h?.workers as { node: string; boot: string }[] | undefined;
        if (h?.ready === true && ready?.length === count && also(ready)) return i;
      }
      await sleep(3000);
    }
    const states = await Promise.all([0, 1, 2].map((i) => vm(i).run('pi-node status; journalctl -u pi-image-agent -u pi-image-engine --no-pager | tail -n 40', 60_000).then((r) => r.output, () => '')));
    throw new Error(`no node served within ${timeoutMs / 1000}s:\n${states.map((s, i) => `--- node${i + 1}\n${s}`).join('\n')}`);
  }

  async function chat(i: number, body: Record<string, unknown>) {
    const res = await fetch(`${api(i)}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as { choices: { message: { content: string }; finish_reason: string }[] } };
  }

  /** One request to a llama-server inside node i (the image has no curl: the test layer's helper). */
  async function engine<T>(i: number, port: number, path: string, body: Record<string, unknown>): Promise<T> {
    const out = await vm(i).check(`pi-image-test-http POST http://127.0.0.1:${port}${path} '${JSON.stringify(body)}'`, 10 * 60_000);
    const [code, json] = [out.split('\n')[0], out.split('\n').slice(1).join('\n')];
    expect(code).toBe('200');
    return JSON.parse(json) as T;
  }

  /**
   * Greedy token ids (EOS ignored) with each one's 5 likeliest tokens and log-probabilities,
   * and the greedy chat answer, from a llama-server inside node i. The demo model's sentence
   * does not depend on the layers' small work; the runner-up tokens and the log-probabilities do.
   */
  async function generate(i: number, port: number): Promise<{ tokens: number[]; logprobs: [number, number][]; answer: string }> {
    const c = await engine<{ tokens: number[]; completion_probabilities: { top_logprobs: { id: number; logprob: number }[] }[] }>(i, port, '/completion', { prompt: PROMPT, n_predict: 24, temperature: 0, ignore_eos: true, return_tokens: true, cache_prompt: false, n_probs: 5 });
    const chat = await engine<{ choices: { message: { content: string }; finish_reason: string }[] }>(i, port, '/v1/chat/completions', { messages: [{ role: 'user', content: PROMPT }], max_tokens: 32, temperature: 0 });
    expect(chat.choices[0]?.finish_reason).toBe('stop');
    return { tokens: c.tokens, logprobs: c.completion_probabilities.flatMap((p) => p.top_logprobs.map((t) => [t.id, t.logprob] as [number, number])), answer: chat.choices[0]?.message.content ?? '' };
  }

  beforeAll(async () => {
    const model = join(work, 'tiny.gguf');
    writeFileSync(model, demoGguf());
    const env = { PI_IMAGE_CACHE: TEST_CACHE };
    // The owner's update key: the image trusts its public half (model updates below).
    const keys = await runCli(['keys', 'new', '--dir', work, '--name', 'ota'], { env });
    if (keys.exitCode !== 0) throw new Error(`keys new: ${keys.stderr}`);
    const common = ['build', '--board', 'qemu', ...QEMU_TEST_FLAGS, '--layer', join(REPO, 'test/fixtures/layers/serial-console'), '--cluster', 'test', '--cluster-size', '3', '--failover-grace', '3600', '--model', model, '--context-length', '256', '--ntp-server', TIME_SERVER, '--ssh-key', join(REPO, 'test/fixtures/test-login-key.pub'), '--ota-key', join(work, 'ota.pub')];
    for (const [args, what] of [
      [[...common, '--out', join(work, 'out')], 'cluster image'],
      [[...common, '--cluster-secret', join(REPO, 'test/fixtures/intruder.secret'), '--out', join(work, 'intruder')], 'intruder image'],
    ] as const) {
      const built = await runCli([...args], { env });
      if (built.exitCode !== 0) throw new Error(`${what}: ${built.stderr}`);
    }
    // One vCPU each: several emulated nodes on a 2-core host without overcommitting it.
    cluster = await startCluster({
      image: join(work, 'out/pi-image-qemu.img'),
      images: { [INTRUDER]: join(work, 'intruder/pi-image-qemu.img') },
      nodes: 4,
      start: false,
      cpus: 1,
      memoryMib: 1024,
      firstApiPort: 18180,
      // PI_IMAGE_TEST_CONSOLES=<dir>: keep every node's serial console there, to watch a run live.
      onOutput: (i, text) => {
        if (process.env.PI_IMAGE_TEST_CONSOLES) appendFileSync(join(process.env.PI_IMAGE_TEST_CONSOLES, `node${i + 1}.log`), text);
      },
    });
    timeServer = await startTimeServer(cluster.lan.namespace, TIME_SERVER, work);
    started = Date.now();
    for (const i of [0, 1, 2]) cluster.startNode(i);
    for (const i of [0, 1, 2]) await loggedIn(i);
  }, 45 * 60_000);

  afterAll(async () => {
    await timeServer?.stop();
    await cluster?.stop();
  });

  it('assembles into one root and two workers without any input, and serves a first token', async () => {
    rootIndex = await waitServing([0, 1, 2], 20 * 60_000);
    const first = await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 8, temperature: 0 });
    expect(first.status).toBe(200);
    figures.push(`VM start to first served completion: ${((Date.now() - started) / 1000).toFixed(0)} s (3 nodes, 1 emulated vCPU each, 2-core host)`);
    const all = await Promise.all([0, 1, 2].map(status));
    rootId = all[rootIndex]?.node as string;
    expect(all.filter((s) => s.role === 'root')).toHaveLength(1);
    for (const i of workers()) expect(all[i]).toMatchObject({ role: 'worker', root: rootId, engine: { state: 'ready' } });
    expect(all[rootIndex]?.engine.workers).toHaveLength(2);
    expect(all[rootIndex]?.peers.map((p) => p.node).sort()).toEqual(workers().map((i) => all[i]?.node).sort());
  }, 25 * 60_000);

  it('generates with both workers attached: the root holds an RPC connection to each', async () => {
    const conns = await vm(rootIndex).check("ss -Htn state established '( dport = :50052 )' | awk '{print $4}' | cut -d: -f1 | sort -u");
    const peers = (await status(rootIndex)).peers.map((p) => p.addresses[0]).sort();
    expect(conns.split('\n').filter(Boolean).sort()).toEqual(peers);
    const line = (await status(rootIndex)).engine.command ?? '';
    expect(line).toMatch(/llama-server .*--rpc \S+:50052,\S+:50052 -ngl 99/);
    // The RPC servers (no authentication of their own) listen on the LAN address only, not on 0.0.0.0.
    const rootView = await status(rootIndex);
    for (const i of workers()) {
      const listening = await vm(i).check("ss -Hltn '( sport = :50052 )' | awk '{print $4}'");
      const node = (await status(i)).node;
      expect(listening).toBe(`${rootView.peers.find((p) => p.node === node)?.addresses[0]}:50052`);
    }
  }, 5 * 60_000);

  it('generates the same token ids as a single-node run of the same model', async () => {
    const distributed = await generate(rootIndex, 8081);
    const root = vm(rootIndex);
    // By hand as the agent starts it: the runtime folder's program, its libraries first.
    await root.check('LD_LIBRARY_PATH=/opt/pi-image/runtime/current /opt/pi-image/runtime/current/llama-server -m /var/lib/pi-image/model/current/tiny.gguf --host 127.0.0.1 --port 8099 -t 1 -c 256 > /tmp/single.log 2>&1 &');
    await root.check('(for i in $(seq 120); do pi-image-test-http GET http://127.0.0.1:8099/health | head -1 | grep -q 200 && exit 0; sleep 2; done; cat /tmp/single.log; exit 1)', 5 * 60_000);
    const single = await generate(rootIndex, 8099);
    await root.check('kill %1; wait');
    const sha = (ids: number[]) => createHash('sha256').update(JSON.stringify(ids)).digest('hex');
    expect(distributed.tokens).toHaveLength(24);
    expect(sha(distributed.tokens)).toBe(sha(single.tokens));
    expect(distributed.logprobs.map(([id]) => id)).toEqual(single.logprobs.map(([id]) => id));
    distributed.logprobs.forEach(([, lp], k) => expect(lp).toBeCloseTo(single.logprobs[k]?.[1] as number, 3));
    expect(distributed.answer).toBe(DEMO_SENTENCE);
    expect(single.answer).toBe(DEMO_SENTENCE);
    // And through the root's API, as a user asks.
    const viaApi = await chat(rootIndex, { messages: [{ role: 'user', content: 'Hello, cluster' }], max_tokens: 32, temperature: 0 });
    expect(viaApi.json.choices[0]).toMatchObject({ message: { content: DEMO_SENTENCE }, finish_reason: 'stop' });
  }, 15 * 60_000);

  it('serves the official openai client, streamed and not, with finish_reason set', async () => {
    const client = new OpenAI({ baseURL: `${api(rootIndex)}/v1`, apiKey: 'unused' });
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['tiny']);
    const whole = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, temperature: 0 });
    expect(['stop', 'length']).toContain(whole.choices[0]?.finish_reason);
    expect(whole.choices[0]?.message.content?.length).toBeGreaterThan(0);
    const stream = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12, temperature: 0, stream: true });
    let text = '';
    let reason: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      reason = chunk.choices[0]?.finish_reason ?? reason;
    }
    expect(['stop', 'length']).toContain(reason);
    expect(text).toBe(whole.choices[0]?.message.content);
  }, 10 * 60_000);

  it('answers 20 malformed requests with 4xx, then still serves a good one', async () => {
    for (const { body, headers } of MALFORMED_REQUESTS) {
      const res = await fetch(`${api(rootIndex)}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      expect(res.status, body.slice(0, 60)).toBeGreaterThanOrEqual(400);
      expect(res.status, body.slice(0, 60)).toBeLessThan(500);
    }
    // Lower-case header names and an odd header layout on the wire, not through fetch.
    const raw = await new Promise<number>((resolve, reject) => {
      const req = request(`${api(rootIndex)}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain', 'x-odd': 'yes' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{"messages":[{"role":"user","content":"hi"}],"max_tokens":"many"}');
    });
    expect(raw).toBe(400);
    expect((await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 })).status).toBe(200);
  }, 10 * 60_000);

  it('did its first boot: id from the board serial, own name, login user with keys only, root locked, secret off the boot partition', async () => {
    for (const i of [0, 1, 2]) {
      const s = await status(i);
      expect(await vm(i).check('journalctl -b -u pi-image-first-boot -o cat | grep "node id"')).toContain(`node id ${s.node} (from the board serial)`);
      expect(s.hostname).toBe(`test-${s.node.slice(0, 6)}`);
      machineIds[i] = await vm(i).check('cat /etc/machine-id');
      expect(await vm(i).check('getent shadow pi root | cut -d: -f1,2')).toMatch(/^pi:\*\nroot:!/);
      expect(await vm(i).check('cat /home/pi/.ssh/authorized_keys')).toBe(readFileSync(join(REPO, 'test/fixtures/test-login-key.pub'), 'utf8').trim());
      expect(await vm(i).check('stat -c "%U %a" /home/pi/.ssh/authorized_keys /etc/pi-image/cluster.secret')).toBe('pi 600\nroot 600');
      expect(await vm(i).check('cat /etc/pi-image/cluster.secret')).toBe(SECRET);
      expect((await vm(i).run('ls /boot/firmware/pi-image')).status).not.toBe(0);
      expect(await vm(i).check('ls /etc/ssh/ssh_host_ed25519_key.pub')).toBeTruthy();
    }
    expect(new Set(machineIds).size).toBe(3);
  }, 5 * 60_000);

  it('runs every engine process as its own unprivileged user, hardened, and the agent with one capability; keeps the clock synchronised from the LAN time server (timesyncd)', async () => {
    // The unit's dynamic user (a UID systemd allocates at each start), never root.
    const uids = async (i: number, name: string) => (await vm(i).check(`ps -o uid= -C ${name} | tr -d ' ' | sort -u`)).split('\n').filter(Boolean);
    const unitUid = async (i: number) => vm(i).check('systemctl show -p UID --value pi-image-engine');
    for (const [i, name] of [[rootIndex, 'llama-server'], ...workers().map((w) => [w, 'ggml-rpc-server'])] as [number, string][]) {
      const uid = await unitUid(i);
      expect(Number(uid)).toBeGreaterThan(0);
      expect(await uids(i, name)).toEqual([uid]);
    }
    expect(await vm(rootIndex).check('grep -E "^(CapEff|NoNewPrivs)" /proc/$(systemctl show -p MainPID --value pi-image-engine)/status | tr -s "[:blank:]" " " | sort')).toBe('CapEff: 0000000000000000\nNoNewPrivs: 1');
    // The agent: root, but of root's capabilities only CAP_NET_ADMIN (bit 12), for its nftables table.
    expect(await vm(rootIndex).check('grep -E "^(CapEff|NoNewPrivs)" /proc/$(systemctl show -p MainPID --value pi-image-agent)/status | tr -s "[:blank:]" " " | sort')).toBe('CapEff: 0000000000001000\nNoNewPrivs: 1');
    // Every unit the image adds, scored; the engine's must be MEDIUM or better.
    const units = (await vm(rootIndex).check('ls /usr/lib/systemd/system/ | grep "^pi-image-.*\\.service$" | sed "s/\\.service$//"')).split('\n').filter(Boolean);
    expect(units).toEqual(expect.arrayContaining(['pi-image-engine', 'pi-image-agent', 'pi-image-first-boot', 'pi-image-growroot']));
    for (const unit of units) {
      const line = await vm(rootIndex).check(`systemd-analyze security ${unit}.service --no-pager 2>/dev/null | grep 'Overall exposure level'`, 3 * 60_000);
      const [, score, level] = /:\s*([\d.]+)\s+(\w+)/.exec(line) ?? [];
      figures.push(`systemd-analyze security ${unit}.service: ${score} ${level}`);
      if (unit === 'pi-image-engine') expect(['SAFE', 'OK', 'MEDIUM']).toContain(level);
    }
    // No real-time clock on a Pi: every node sets its clock from the configured LAN time server.
    for (const i of [0, 1, 2]) {
      expect(await vm(i).check('systemctl is-enabled systemd-timesyncd; systemctl is-active systemd-timesyncd')).toBe('enabled\nactive');
      const synced = await vm(i).run('for n in $(seq 90); do [ "$(timedatectl show -p NTPSynchronized --value)" = yes ] && break; sleep 2; done; timedatectl show -p NTPSynchronized --value; timedatectl show-timesync -p ServerAddress --value', 5 * 60_000);
      expect(synced.output.trim().split('\n'), `node${i + 1}: ${synced.output}`).toEqual(['yes', TIME_SERVER]);
    }
    // The engine's resident size against the budget the build computed for each role.
    for (const [i, role] of [[rootIndex, 'root'], [workers()[0] as number, 'worker']] as const) {
      const { engineMemory } = JSON.parse((await vm(i).run('pi-node doctor --json', 3 * 60_000)).output) as { engineMemory: { status: string; role: string; residentMib: number; budgetMib: number } };
      expect(engineMemory).toMatchObject({ status: 'ok', role });
      figures.push(`engine memory on the ${role}: ${engineMemory.residentMib} MiB resident of a ${engineMemory.budgetMib} MiB budget`);
    }
  }, 15 * 60_000);

  it('answers mDNS for <cluster>.local with the root', async () => {
    const rootAddress = (await status(workers()[0] as number)).peers.find((p) => p.node === rootId)?.addresses[0];
    const resolved = await vm(workers()[1] as number).check('getent ahostsv4 test.local | head -1 | cut -d" " -f1', 60_000);
    expect(resolved).toBe(rootAddress);
  }, 5 * 60_000);

  it('measures the agent: CPU time over 60 s idle and 60 s serving', async () => {
    const cpu = async () => {
      const out = await vm(rootIndex).check('cat /proc/$(systemctl show -p MainPID --value pi-image-agent)/stat');
      const fields = out.slice(out.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
    };
    const idle0 = await cpu();
    await sleep(60_000);
    const idle = (await cpu()) - idle0;
    const busy0 = await cpu();
    const until = Date.now() + 60_000;
    let served = 0;
    while (Date.now() < until) {
      if ((await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 8 })).status === 200) served++;
    }
    const busy = (await cpu()) - busy0;
    figures.push(`agent CPU time on the root: ${idle.toFixed(2)} s in 60 s idle, ${busy.toFixed(2)} s in 60 s serving (${served} completions)`);
    expect(served).toBeGreaterThan(0);
    // Idle means asleep: no polling. (Emulated CPUs are slow, so this bound is generous for real hardware.)
    expect(idle).toBeLessThan(1);
  }, 10 * 60_000);

  it('keeps the workers connected across an agent restart on the root; a worker whose ruleset was flushed closes its engine port again at the next membership change', async () => {
    const rpcConnections = () => vm(rootIndex).check("ss -Htn state established '( dport = :50052 )' | awk '{print $4, $5}' | sort");
    const enginePid = () => vm(rootIndex).check('systemctl show -p MainPID --value pi-image-engine');
    const [connsBefore, pidBefore] = [await rpcConnections(), await enginePid()];
    expect(connsBefore.split('\n')).toHaveLength(2);

    // A stranger on the LAN: the test's own address on the bridge, in the link-local range the nodes use.
    const inLan = (...cmd: string[]) => execa('ip', ['netns', 'exec', cluster.lan.namespace, ...cmd], { reject: false });
    await inLan('ip', 'addr', 'add', '169.254.250.250/16', 'dev', 'br0');
    const w = workers()[1] as number;
    const workerNode = (await status(w)).node;
    const workerAddress = (await status(rootIndex)).peers.find((p) => p.node === workerNode)?.addresses[0] as string;
    const strangerCanOpen = async () => (await inLan('timeout', '10', 'bash', '-c', `exec 3<>/dev/tcp/${workerAddress}/50052`)).exitCode === 0;
    expect(await strangerCanOpen()).toBe(false);

    // The worker loses its ruleset (someone runs nft flush ruleset, or Debian's nftables.service starts).
    await vm(w).check('nft flush ruleset');
    expect(await strangerCanOpen()).toBe(true); // the port is open now: the check below can fail

    // One membership change on every node: the root's agent restarts (it says it leaves, then comes back).
    await vm(rootIndex).check('systemctl restart pi-image-agent');
    expect(await waitServing([rootIndex], 5 * 60_000)).toBe(rootIndex);
    expect(await enginePid()).toBe(pidBefore);
    expect(await rpcConnections()).toBe(connsBefore);
    expect((await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 })).status).toBe(200);
    const deadline = Date.now() + 2 * 60_000;
    while ((await strangerCanOpen()) && Date.now() < deadline) await sleep(3000);
    expect(await strangerCanOpen()).toBe(false);
    expect(await vm(w).check('journalctl -u pi-image-agent -o cat | grep -c "loading the whole table again"')).not.toBe('0');
  }, 15 * 60_000);

  it('serves again after a worker reboots, with no manual step', async () => {
    const w = workers()[0] as number;
    const before = (await status(rootIndex)).engine.command;
    const node = (await status(w)).node;
    const oldBoot = ((await healthz(rootIndex))?.workers as { node: string; boot: string }[]).find((x) => x.node === node)?.boot;
    expect(oldBoot).toBeDefined();
    const mark = vm(w).consoleLog.length;
    vm(w).send('systemctl reboot\n');
    // The shell prompts once more before the node goes down: wait for the new boot's autologin first.
    const relogin = await vm(w).waitFor(/login: root \(automatic login\)/, 15 * 60_000, mark);
    await loggedIn(w, mark + (relogin.index ?? 0));
    // Serving again means: with the rebooted worker's new agent (a new boot id), not a stale connection.
    expect(await waitServing([rootIndex], 15 * 60_000, (ws) => ws.some((x) => x.node === node && x.boot !== oldBoot))).toBe(rootIndex);
    expect((await status(rootIndex)).engine.command).toBe(before);
    expect((await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 })).status).toBe(200);
  }, 25 * 60_000);

  it("keeps its root through a power cycle in another order, the root's board with a re-flashed card, no clean-up; a node with another secret is never admitted", async () => {
    await Promise.all([0, 1, 2].map((i) => vm(i).shutdown(3 * 60_000)));
    await cluster.reflashNode(rootIndex);
    // Workers first (reverse order, a few seconds apart: they follow the root they persisted),
    // then the intruder, then the root last with its fresh card, once the others are up.
    for (const i of [...workers().reverse(), INTRUDER]) {
      cluster.startNode(i);
      await sleep(5000);
    }
    for (const i of [...workers(), INTRUDER]) await loggedIn(i);
    cluster.startNode(rootIndex);
    await loggedIn(rootIndex);
    // A new card: a first boot again (new machine-id, secret taken off its boot partition), same board serial.
    expect(await vm(rootIndex).check('cat /etc/machine-id')).not.toBe(machineIds[rootIndex]);
    expect(await waitServing([0, 1, 2], 20 * 60_000)).toBe(rootIndex);
    expect((await status(rootIndex)).node).toBe(rootId);
    expect(await vm(rootIndex).check('cat /etc/pi-image/cluster.secret')).toBe(SECRET);
    for (const i of workers()) expect(await status(i)).toMatchObject({ role: 'worker', root: rootId });
    expect((await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 })).status).toBe(200);

    const root = await status(rootIndex);
    expect(root.peers).toHaveLength(2);
    const intruder = JSON.parse(await vm(INTRUDER).check('pi-node status --json')) as AgentStatus;
    expect(root.peers.map((p) => p.node)).not.toContain(intruder.node);
    // The intruder repeats itself every 30 s at most (it never settles): the root counts its bad tags.
    const deadline = Date.now() + 3 * 60_000;
    while ((await status(rootIndex)).rejected.badTag === 0 && Date.now() < deadline) await sleep(5000);
    expect((await status(rootIndex)).rejected.badTag).toBeGreaterThan(0);
    expect(intruder.role).toBe('undecided');
    expect(intruder.peers).toHaveLength(0);
    // The engine port of a worker: closed to the intruder (the firewall drops it), open to the root.
    const workerAddress = root.peers[0]?.addresses[0] as string;
    const probe = `timeout 10 bash -c 'exec 3<>/dev/tcp/${workerAddress}/50052' && echo open || echo closed`;
    expect(await vm(INTRUDER).check(probe, 60_000)).toBe('closed');
  }, 45 * 60_000);

  /** `pi-image ota …` against the root's OTA push port. */
  const ota = (args: string[]) => runCli(['ota', ...args, '--cluster', `127.0.0.1:${cluster.otaPorts[rootIndex]}`, '--key', join(work, 'ota.key')], { env: { PI_IMAGE_CACHE: TEST_CACHE } });
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  interface OtaRecord {
    phase: string;
    version: string;
    reason?: string;
    nodes: Record<string, { fetched?: number }>;
    timings: Record<string, number>;
  }
  /** A signed model bundle of the demo model that answers `sentence`; its health check expects `expected`. */
  async function modelBundle(version: string, sentence: string, expected: string): Promise<string> {
    const file = join(work, `${version}.gguf`);
    writeFileSync(file, demoGguf({ sentence }));
    const out = join(work, `${version}.bundle`);
    const packed = await runCli(['model', 'pack', file, '--model-version', version, '--key', join(work, 'ota.key'), '--health-prompt', PROMPT, '--health-tokens', '32', '--health-text-sha256', sha256(expected), '-o', out]);
    expect(packed.exitCode, packed.stderr).toBe(0);
    return out;
  }
  const answer = async () => (await chat(rootIndex, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 32, temperature: 0 })).json.choices[0]?.message.content;
  const models = async () => {
    const run = await ota(['status', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const s = run.events.find((e) => e.type === 'result')?.data as { model: { current: string }; nodes: { model: { current: string } }[] };
    return [s.model.current, ...s.nodes.map((n) => n.model.current)];
  };

  it('survives the loss of its root: a worker takes over after the grace period; a model update while the old root is away; it comes back as a worker and is brought onto that model before it serves', async () => {
    // The image waits long for a missing root (the reboot and re-flash tests above need it); here the workers wait 30 s.
    const grace = 30;
    const oldBoots = ((await healthz(rootIndex))?.workers as { boot: string }[]).map((w) => w.boot);
    for (const i of workers()) {
      await vm(i).check(`node -e "const fs=require('fs'),f='/etc/pi-image/node.json',s=JSON.parse(fs.readFileSync(f));s.cluster.failoverGraceSeconds=${grace};fs.writeFileSync(f,JSON.stringify(s))" && systemctl restart pi-image-agent`);
    }
    // Serving again with the workers' new agents (new boot ids), not still with the old ones.
    expect(await waitServing([rootIndex], 15 * 60_000, (ws) => ws.every((w) => !oldBoots.includes(w.boot)))).toBe(rootIndex);
    const remaining = workers();
    const ids = await Promise.all(remaining.map(async (i) => (await status(i)).node));
    const expected = remaining[ids.indexOf([...ids].sort()[0] as string)] as number;

    const cut = Date.now();
    await vm(rootIndex).kill(); // the power cut: no goodbye, only the kernel's keepalive notices
    const newRoot = await waitServing(remaining, 20 * 60_000, () => true, 1);
    const took = (Date.now() - cut) / 1000;
    figures.push(`root power cut to serving again on a new root: ${took.toFixed(0)} s (keepalive ~25 s + grace ${grace} s + engine restarts, emulated)`);
    expect(newRoot).toBe(expected);
    expect((await chat(newRoot, { messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 })).status).toBe(200);
    const newRootId = (await status(newRoot)).node;
    expect(took).toBeGreaterThan(grace);

    const oldRoot = rootIndex;
    rootIndex = newRoot;
    // An update while a node is away: the two serving nodes take it (an update needs every node that serves).
    expect(await models()).toEqual(['tiny', 'tiny']);
    const AWAY = 'Updated while one node was away.';
    const pushed = await ota(['push', await modelBundle('demo-2', AWAY, AWAY), '--json']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    expect(pushed.events.find((e) => e.type === 'result')?.data).toMatchObject({ phase: 'committed', version: 'demo-2' });
    expect(await models()).toEqual(['demo-2', 'demo-2']);

    // A new VM (and console log) for the old root's board: its login is looked for from the start.
    const back = Date.now();
    cluster.startNode(oldRoot);
    await loggedIn(oldRoot);
    expect(await waitServing([newRoot], 20 * 60_000, (ws) => ws.some((w) => w.node === rootId))).toBe(newRoot);
    const all = await Promise.all([0, 1, 2].map(status));
    expect(all.filter((s) => s.role === 'root').map((s) => s.node)).toEqual([newRootId]);
    expect(all[oldRoot]).toMatchObject({ role: 'worker', root: newRootId });
    // It had only the model it was built with: staged from the bundle the root keeps, switched, before the engine took it in.
    const updateLog = await vm(newRoot).check('journalctl -u pi-image-agent -o cat | grep -E "update|error" | tail -n 30');
    expect(updateLog, updateLog).toContain(`update: ${rootId} ran model tiny; brought onto demo-2`);
    expect(await models()).toEqual(['demo-2', 'demo-2', 'demo-2']);
    expect(await answer()).toBe(AWAY);
    figures.push(`a node away during a model update: its VM start to serving on the new model ${Math.round((Date.now() - back) / 1000)} s`);
    rootId = newRootId;
  }, 60 * 60_000);

  it('replaces the model on all three nodes over the network, proven by its answer; a model that fails its health check is rolled back everywhere', async () => {
    expect(await models()).toEqual(['demo-2', 'demo-2', 'demo-2']);
    const NEW = 'Fresh weights reached every node.';
    const good = await modelBundle('demo-3', NEW, NEW);
    const t0 = Date.now();
    const push = await ota(['push', good, '--json']);
    expect(push.exitCode, push.stderr).toBe(0);
    const done = push.events.find((e) => e.type === 'result')?.data as OtaRecord;
    expect(done).toMatchObject({ phase: 'committed', version: 'demo-3' });
    figures.push(`OTA model bundle (${statSync(good).size} bytes) to 3 nodes: ${Math.round((Date.now() - t0) / 1000)} s, phases ${JSON.stringify(done.timings)}, bytes fetched per worker ${JSON.stringify(done.nodes)}`);
    expect(Object.values(done.nodes).map((n) => n.fetched).sort()).toEqual([0, statSync(good).size, statSync(good).size]);
    expect(await models()).toEqual(['demo-3', 'demo-3', 'demo-3']);
    expect(await answer()).toBe(NEW);

    const bad = await modelBundle('demo-4', 'Nobody expects this answer.', NEW);
    const t1 = Date.now();
    const rolled = await ota(['push', bad]);
    expect(rolled.exitCode).toBe(1);
    expect(rolled.stderr).toMatch(/rolled-back: health check: the output of "hello pi cluster" hashes to/);
    expect(rolled.stderr).toMatch(/every node is back on demo-3/);
    figures.push(`OTA model rollback (health check failed) on 3 nodes: ${Math.round((Date.now() - t1) / 1000)} s`);
    expect(await models()).toEqual(['demo-3', 'demo-3', 'demo-3']);
    expect(await answer()).toBe(NEW);
  }, 30 * 60_000);

  it("replaces llama.cpp on all three nodes with another Debian suite's packages: the image's first runtime is a versioned folder like any update's", async () => {
    const runtimes = async () => {
      const run = await ota(['status', '--json']);
      expect(run.exitCode, run.stderr).toBe(0);
      const s = run.events.find((e) => e.type === 'result')?.data as { runtime: { current: string }; nodes: { runtime: { current: string } }[] };
      return [s.runtime.current, ...s.nodes.map((n) => n.runtime.current)];
    };
    const first = (await runtimes())[0] as string;
    expect(first).toMatch(/^\d+\.\d+\.\d+\+dfsg-/);
    expect(await runtimes()).toEqual([first, first, first]);
    // The image's llama.cpp is not installed from packages: the engines run from the runtime folder, with its libraries and backends.
    const where = async (i: number, program: string) => vm(i).check(`readlink /proc/$(pgrep -o -x ${program})/exe; tr '\\0' '\\n' < /proc/$(pgrep -o -x ${program})/environ | grep ^LD_LIBRARY_PATH=`);
    expect(await where(rootIndex, 'llama-server')).toBe(`/opt/pi-image/runtime/versions/${first}/llama-server\nLD_LIBRARY_PATH=/opt/pi-image/runtime/versions/${first}`);
    expect(await vm(rootIndex).check('(dpkg -s llama.cpp-tools >/dev/null 2>&1 || dpkg -s libggml0 >/dev/null 2>&1) && echo installed; ls /usr/bin/llama-server /usr/lib/*/ggml 2>&1 | grep -c "No such file"')).toBe('2');

    // sid's packages of llama.cpp, under a version newer than the image's (today forky and sid carry the same build).
    const NEW = 'Fresh weights reached every node.';
    const bundle = join(work, 'llama-sid.bundle');
    const packed = await runCli(['runtime', 'pack', '--engine', 'llama.cpp', '--debian-suite', 'sid', '--engine-version', `${first}+sid`, '--key', join(work, 'ota.key'), '--health-prompt', PROMPT, '--health-tokens', '32', '--health-text-sha256', sha256(NEW), '-o', bundle], { env: { PI_IMAGE_CACHE: TEST_CACHE } });
    expect(packed.exitCode, packed.stderr).toBe(0);
    const t0 = Date.now();
    const push = await ota(['push', bundle, '--json']);
    expect(push.exitCode, push.stderr).toBe(0);
    const done = push.events.find((e) => e.type === 'result')?.data as OtaRecord;
    expect(done).toMatchObject({ phase: 'committed', version: `${first}+sid` });
    figures.push(`OTA llama.cpp runtime bundle (${statSync(bundle).size} bytes, Debian sid's packages) to 3 nodes: ${Math.round((Date.now() - t0) / 1000)} s, phases ${JSON.stringify(done.timings)}, bytes fetched per node ${JSON.stringify(done.nodes)}`);
    expect(Object.values(done.nodes).map((n) => n.fetched).sort()).toEqual([0, statSync(bundle).size, statSync(bundle).size]);
    expect(await runtimes()).toEqual([`${first}+sid`, `${first}+sid`, `${first}+sid`]);
    expect(await where(rootIndex, 'llama-server')).toContain(`/opt/pi-image/runtime/versions/${first}+sid/llama-server`);
    for (const i of workers()) expect(await where(i, 'ggml-rpc-server')).toContain(`/opt/pi-image/runtime/versions/${first}+sid/ggml-rpc-server`);
    expect(await answer()).toBe(NEW);
  }, 30 * 60_000);

  it('leaves no trace of the secret on any boot partition, and keeps the LAN off the host', async () => {
    await Promise.all([0, 1, 2, INTRUDER].map((i) => vm(i).shutdown(3 * 60_000)));
    for (const disk of cluster.disks.slice(0, 3)) {
      const table = await readPartitionTable(disk, silentReporter);
      const boot = table.partitions[0] as { start: number; size: number };
      const fat = Buffer.alloc(boot.size * 512);
      const fd = openSync(disk, 'r');
      readSync(fd, fat, 0, fat.length, boot.start * 512);
      closeSync(fd);
      expect(fat.includes(Buffer.from(SECRET)), disk).toBe(false);
    }
    expect((await execa('ip', ['-o', 'link'])).stdout).not.toMatch(/\btap0\b/);
    const ns = cluster.lan.namespace;
    await cluster.stop();
    expect((await execa('ip', ['netns', 'list'])).stdout).not.toContain(ns);
  }, 10 * 60_000);
});

/**
 * Deployment as a user does it: the same image flashed to three cards with `pi-image flash`
 * (its .img.zst and .bmap), each given its own identity — a fixed root, a static address —
 * and booted together on a fresh emulated LAN.
 */
describe('three cards flashed from the image, each with its own identity', () => {
  const img = join(work, 'out/pi-image-qemu.img');
  const cards = [join(work, 'card-alpha.img'), join(work, 'card-beta.raw'), join(work, 'card-gamma.img')];
  const names = ['alpha', 'beta', 'gamma'];
  /** The LAN NIC of the second emulated node (private-lan.ts numbers them from 01). */
  const BETA_LAN_MAC = '52:54:00:a1:00:02';
  const BETA_ADDRESS = '169.254.77.3';
  let lan: EmulatedCluster | undefined;
  let loop = '';
  const node = (i: number) => lan?.vms[i] as QemuVm;
  const nodeStatus = async (i: number) => JSON.parse(await node(i).check('pi-node status --json')) as AgentStatus;

  afterAll(async () => {
    await lan?.stop();
    if (loop) await execa('losetup', ['-d', loop], { reject: false });
  });

  it('flashes the .img.zst to a loop device block for block as the bmap maps it; a corrupted byte is caught by verify', async () => {
    writeFileSync(cards[1] as string, '');
    await execa('truncate', ['-s', String(statSync(img).size), cards[1] as string]);
    loop = (await execa('losetup', ['--find', '--show', cards[1] as string])).stdout.trim();
    const result = await flash({ image: `${img}.zst`, target: loop, force: true, confirm: async () => true, reporter: silentReporter });
    expect(result).toMatchObject({ targetKind: 'block', verified: true, bmap: join(work, 'out/pi-image-qemu.bmap') });
    const bmap = parseBmap(readFileSync(join(work, 'out/pi-image-qemu.bmap'), 'utf8'));
    const expectMappedEqual = (target: string) => {
      const [a, b] = [openSync(img, 'r'), openSync(target, 'r')];
      for (const r of bmapByteRanges(bmap)) {
        const [x, y] = [Buffer.alloc(r.length), Buffer.alloc(r.length)];
        readSync(a, x, 0, r.length, r.offset);
        readSync(b, y, 0, r.length, r.offset);
        expect(x.equals(y), `${target}: blocks ${r.first}-${r.last}`).toBe(true);
      }
      closeSync(a);
      closeSync(b);
    };
    expectMappedEqual(loop);
    // And to a regular file, as people who flash with other tools do.
    const plain = join(work, 'plain.img');
    expect(await flash({ image: `${img}.zst`, target: plain, reporter: silentReporter })).toMatchObject({ targetKind: 'file', verified: true });
    expectMappedEqual(plain);
    rmSync(plain);
    const victim = bmapByteRanges(bmap).at(-1) as { offset: number; first: number };
    const fd = openSync(loop, 'r+');
    writeSync(fd, Buffer.from([0x5a]), 0, 1, victim.offset + 7);
    closeSync(fd);
    await expect(flash({ image: img, target: loop, verifyOnly: true, reporter: silentReporter })).rejects.toThrow(new RegExp(`differs from the image in blocks? ${victim.first}\\b`));
  }, 10 * 60_000);

  it('gives each card its identity: alpha the root, beta a static address, gamma a name only', async () => {
    const yes = async () => true;
    await flash({ image: `${img}.zst`, target: cards[0] as string, identity: { hostname: 'alpha', role: 'root', sshKeys: [] }, reporter: silentReporter });
    // beta is the card in the reader: written again, this time with its identity.
    await flash({ image: `${img}.zst`, target: loop, force: true, confirm: yes, identity: { hostname: 'beta', sshKeys: [], network: { link: BETA_LAN_MAC, address: `${BETA_ADDRESS}/16`, dns: [] } }, reporter: silentReporter });
    await execa('losetup', ['-d', loop]);
    loop = '';
    const gamma = await runCli(['flash', `${img}.zst`, cards[2] as string, '--node', 'gamma', '--json']);
    expect(gamma.exitCode, gamma.stderr).toBe(0);
  }, 10 * 60_000);

  it('boot together: three host names, the fixed root, the static address, no card file left on a boot partition', async () => {
    lan = await startCluster({ image: cards[0] as string, images: { 1: cards[1] as string, 2: cards[2] as string }, nodes: 3, cpus: 1, memoryMib: 1024, firstApiPort: 18190 });
    for (const i of [0, 1, 2]) {
      await node(i).waitFor(/root@[\w-]+:~# /, 15 * 60_000);
      await node(i).check('stty -echo; dmesg -n 1; export PAGER=cat SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 TERM=dumb');
    }
    expect(await Promise.all([0, 1, 2].map((i) => node(i).check('hostname')))).toEqual(names);
    // networkd probes a link-local address for conflicts (IPv4 ACD) before adding it: seconds
    // of wall time that a busy emulated node may not have spent yet when its login appears.
    const addressDeadline = Date.now() + 3 * 60_000;
    let hasAddress = false;
    while (!hasAddress && Date.now() < addressDeadline) {
      hasAddress = (await node(1).run(`ip -4 -o addr show | grep -q ' ${BETA_ADDRESS}/16 '`)).status === 0;
      if (!hasAddress) await sleep(5000);
    }
    if (!hasAddress) {
      const why = await node(1).run('ip -4 -o addr show; networkctl list; journalctl -b -u systemd-networkd -o cat | tail -40; journalctl -b -u pi-image-first-boot -o cat');
      throw new Error(`beta never got its static address ${BETA_ADDRESS}/16 in 3 min:\n${why.output}`);
    }
    for (const i of [0, 1, 2]) {
      expect(await node(i).check('ls /boot/firmware/user-data /boot/firmware/network-config /boot/firmware/meta-data /boot/firmware/pi-image/node.json 2>/dev/null | wc -l')).toBe('0');
      expect(await node(i).check('journalctl -b -u pi-image-first-boot -o cat | grep -c "off the boot partition"')).not.toBe('0');
    }
    expect(await node(0).check('journalctl -b -u pi-image-first-boot -o cat | grep "role root"')).toBe('role root (from the card\'s node file)');
    // alpha is the root because its card says so (whatever the ids), and beta is heard at its static address.
    const deadline = Date.now() + 15 * 60_000;
    let root = await nodeStatus(0);
    while (!(root.role === 'root' && root.peers.length === 2) && Date.now() < deadline) {
      await sleep(5000);
      root = await nodeStatus(0);
    }
    expect(root.role).toBe('root');
    const workers = await Promise.all([1, 2].map(nodeStatus));
    for (const w of workers) expect(w).toMatchObject({ role: 'worker', root: root.node });
    expect(root.peers.find((p) => p.node === workers[0]?.node)?.addresses).toContain(BETA_ADDRESS);
  }, 30 * 60_000);

  it('the flashed cards serve the demo sentence', async () => {
    const deadline = Date.now() + 20 * 60_000;
    let ready = false;
    while (!ready && Date.now() < deadline) {
      const res = await fetch(`http://127.0.0.1:${lan?.apiPorts[0]}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      ready = res?.ok === true && ((await res.json()) as { ready?: boolean }).ready === true;
      if (!ready) await sleep(5000);
    }
    expect(ready).toBe(true);
    const res = await fetch(`http://127.0.0.1:${lan?.apiPorts[0]}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: PROMPT }], max_tokens: 32, temperature: 0 }) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]?.message.content).toBe(DEMO_SENTENCE);
  }, 25 * 60_000);
});
