#!/usr/bin/env node
// Whether a Debian suite's Release file on a mirror is past its Valid-Until (a frozen archive
// snapshot, as some build networks serve): prints the date and exits 0 when it is, exits 1 when
// it is still valid (apt's check should stay on), 2 when the mirror cannot be asked.
// Usage: release-expired.mjs <mirror URL> <suite>
const [mirror, suite] = process.argv.slice(2);
if (!mirror || !suite) {
  process.stderr.write('usage: release-expired.mjs <mirror URL> <suite>\n');
  process.exit(2);
}
try {
  const res = await fetch(`${mirror.replace(/\/$/, '')}/dists/${suite}/Release`, { signal: AbortSignal.timeout(20_000) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const validUntil = /^Valid-Until: (.+)$/m.exec(await res.text())?.[1];
  if (validUntil && Date.parse(validUntil) < Date.now()) {
    process.stdout.write(`${validUntil}\n`);
    process.exit(0);
  }
  process.exit(1);
} catch (e) {
  process.stderr.write(`cannot read ${mirror}/dists/${suite}/Release: ${e.message}\n`);
  process.exit(2);
}
