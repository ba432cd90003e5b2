// A cluster's update in one real process, outside any VM: three nodes' version stores in
// folders (runtime and model), the workers' agents on real loopback HTTP servers, the root's
// coordinator. The engine is a stand-in that records what it runs (the VM tests run the real
// one). Usage:
//   node ota-cluster-process.mjs <dist> <work> <push|resume|align> [bundle] [kill-at-phase] [allow-downgrade]
// align: what the root does before its engine starts with workers (one may have been away).
// Prints one JSON line: the outcome and each node's current runtime and model version.
import { createReadStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';

const [dist, work, mode, bundle, killAt, allowDowngrade] = process.argv.slice(2);
const { NodeUpdater } = await import(join(dist, 'node/ota/node-updater.js'));
const { UpdateCoordinator } = await import(join(dist, 'node/ota/coordinator.js'));
const { memberServer, sendCommand } = await import(join(dist, 'node/ota/ota-server.js'));

const secret = Buffer.from('a cluster secret of thirty-two bytes!!');
const trusted = async () => [createPublicKey(readFileSync(join(work, 'ota.pub'), 'utf8'))];
const nodes = ['n1', 'n2', 'n3'];
const engineFile = (n) => join(work, n, 'engine');
const updaters = {};
for (const n of nodes) {
  mkdirSync(join(work, n), { recursive: true });
  const engine = {
    hold: async () => writeFileSync(engineFile(n), 'held'),
    release: async () => {
      const model = await updaters[n].model.store.current();
      // What the runtime's files say, not only its version's name: a build marked broken runs broken.
      const broken = (() => { try { return readFileSync(join(work, n, 'runtime', 'current', 'bin/llama-server'), 'utf8').startsWith('broken'); } catch { return false; } })();
      writeFileSync(engineFile(n), `running ${await updaters[n].runtime.store.current()}${model ? ` model ${model}` : ''}${broken ? ' (broken build)' : ''}`);
    },
  };
  const updater = (kind) => new NodeUpdater({ kind, dir: join(work, n, kind), downloadDir: join(work, n, 'download'), trusted, expect: { engine: 'llama.cpp', arch: 'arm64' }, engine, log: (line) => process.stderr.write(`${n}: ${line}\n`) });
  updaters[n] = { runtime: updater('runtime'), model: updater('model') };
  for (const u of Object.values(updaters[n])) await u.store.recover();
}
const ports = {};
let coordinator;
for (const n of nodes) {
  const server = memberServer({ secret, updaters: updaters[n], coordinator: () => (n === 'n1' ? coordinator : undefined), log: () => undefined });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  ports[n] = server.address().port;
}
const members = nodes.map((node) => ({ node, address: '127.0.0.1' }));
const engines = () => nodes.map((n) => { try { return readFileSync(engineFile(n), 'utf8'); } catch { return 'none'; } });
coordinator = new UpdateCoordinator({
  dir: join(work, 'n1', 'ota'),
  self: 'n1',
  local: updaters.n1,
  trusted,
  expect: { engine: 'llama.cpp', arch: 'arm64' },
  members: () => members,
  command: (m, c) => sendCommand(secret, m, ports[m.node], c),
  bundleUrl: (_m, sha) => `http://127.0.0.1:${ports.n1}/ota/bundle/${sha}`,
  waitServing: async () => engines().every((e) => e.startsWith('running ')),
  // The stand-in engine of a runtime or model version named *bad*, or of a broken build, gives the wrong output.
  checkHealth: async () => (engines().some((e) => e.includes('bad') || e.includes('broken')) ? 'the output hashes to something else' : undefined),
  log: (line) => process.stderr.write(`${line}\n`),
  serveTimeoutMs: 1000,
  ...(process.env.OTA_KEEP ? { keep: Number(process.env.OTA_KEEP) } : {}),
  onPhase: (phase) => {
    if (phase === killAt) process.kill(process.pid, 'SIGKILL');
  },
});
let outcome;
try {
  if (mode === 'push') {
    await coordinator.push(createReadStream(bundle), { allowDowngrade: allowDowngrade === '1' });
  } else await coordinator.resume();
  await coordinator.settled();
  outcome = coordinator.status().last?.phase ?? 'none';
  if (mode === 'align') outcome = JSON.stringify(await coordinator.align(members.slice(1)));
} catch (e) {
  outcome = `refused: ${e.message}`;
}
const current = {};
const models = {};
for (const n of nodes) {
  current[n] = (await updaters[n].runtime.store.current()) ?? null;
  models[n] = (await updaters[n].model.store.current()) ?? null;
}
process.stdout.write(`${JSON.stringify({ outcome, current, models, engines: engines(), last: coordinator.status().last ?? null })}\n`);
process.exit(0);
