import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/cli.js';

const SCRIPT = join(REPO, 'scripts/lib/check-node');

const DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n';
const UBUNTU_2404 = 'PRETTY_NAME="Ubuntu 24.04.2 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n';
const FEDORA = 'PRETTY_NAME="Fedora Linux 40"\nID=fedora\nVERSION_ID=40\n';

/** `apt-cache policy nodejs` on Debian 12 with bookworm-backports enabled (it has no nodejs). */
const POLICY_DEBIAN_12 = `nodejs:
  Installed: 18.19.0+dfsg-6~deb12u2
  Candidate: 18.20.4+dfsg-1~deb12u3
  Version table:
     18.20.4+dfsg-1~deb12u3 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 18.19.0+dfsg-6~deb12u2 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
`;
const POLICY_UBUNTU_2404 = `nodejs:
  Installed: (none)
  Candidate: 18.19.1+dfsg-6ubuntu5
  Version table:
     18.19.1+dfsg-6ubuntu5 500
        500 http://archive.ubuntu.com/ubuntu noble/universe amd64 Packages
`;
/** A suite of lower priority (backports) offering Node.js 20: not the candidate, but installable with -t. */
const POLICY_BACKPORTS_20 = `nodejs:
  Installed: (none)
  Candidate: 18.20.4+dfsg-1~deb12u3
  Version table:
     20.19.2+dfsg-1~bpo12+1 100
        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages
     18.20.4+dfsg-1~deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
`;
/** Debian 13: its own nodejs is 20. */
const POLICY_DEBIAN_13 = `nodejs:
  Installed: (none)
  Candidate: 20.19.2+dfsg-1
  Version table:
     20.19.2+dfsg-1 500
        500 http://deb.debian.org/debian trixie/main amd64 Packages
`;

const work = mkdtempSync(join(tmpdir(), 'check-node-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let runs = 0;

/**
 * Runs scripts/lib/check-node with a PATH holding only the tools it may use plus a fake
 * `node` (printing `node`, or none when undefined) and a fake `apt-cache` (printing `policy`).
 */
function check(opts: { node?: string; policy?: string; osRelease: string; args?: string[] }) {
  const bin = join(work, `bin${++runs}`);
  mkdirSync(bin);
  for (const tool of ['sed', 'awk', 'id', 'cat']) {
    const path = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(path, join(bin, tool));
  }
  const fake = (name: string, output: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\ncat <<'EOF'\n${output}EOF\n`);
    chmodSync(join(bin, name), 0o755);
  };
  if (opts.node !== undefined) fake('node', `${opts.node}\n`);
  if (opts.policy !== undefined) fake('apt-cache', opts.policy);
  const osRelease = join(bin, 'os-release');
  writeFileSync(osRelease, opts.osRelease);
  const r = spawnSync('/bin/bash', [SCRIPT, ...(opts.args ?? [])], { encoding: 'utf8', env: { PATH: bin, OS_RELEASE: osRelease } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('scripts/lib/check-node (the Node.js check of scripts/setup-host)', () => {
  it('stops on Debian 12 with its Node.js 18 and says how to get Node.js 20 from NodeSource', () => {
    const r = check({ node: 'v18.19.0', policy: POLICY_DEBIAN_12, osRelease: DEBIAN_12 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('pi-image needs Node.js 20 or newer; this system has Node.js v18.19.0');
    expect(r.stderr).toContain("Debian GNU/Linux 12 (bookworm)'s apt sources offer nodejs 18.20.4+dfsg-1~deb12u3 at most");
    expect(r.stderr).toContain('curl -fsSL https://deb.nodesource.com/setup_20.x -o nodesource_setup.sh');
    expect(r.stderr).toMatch(/bash nodesource_setup\.sh\n.*apt-get install -y nodejs\n/);
    expect(r.stderr).toContain('then run scripts/setup-host again');
  });

  it('stops on Ubuntu 24.04 without any Node.js, the same way', () => {
    const r = check({ policy: POLICY_UBUNTU_2404, osRelease: UBUNTU_2404 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('this system has no Node.js (no `node` on PATH)');
    expect(r.stderr).toContain("Ubuntu 24.04.2 LTS's apt sources offer nodejs 18.19.1+dfsg-6ubuntu5 at most");
    expect(r.stderr).toContain('https://deb.nodesource.com/setup_20.x');
  });

  it('names the suite when only a lower-priority one (backports) has Node.js 20', () => {
    const r = check({ node: 'v18.19.0', policy: POLICY_BACKPORTS_20, osRelease: DEBIAN_12 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('apt-get install -y -t bookworm-backports nodejs');
    expect(r.stderr).not.toContain('nodesource');
    const apt = check({ node: 'v18.19.0', policy: POLICY_BACKPORTS_20, osRelease: DEBIAN_12, args: ['--apt'] });
    expect([apt.status, apt.stdout]).toEqual([0, '-t bookworm-backports nodejs\n']);
  });

  it('--apt: tells setup-host whether apt can install Node.js 20, and with which arguments', () => {
    expect(check({ policy: POLICY_DEBIAN_13, osRelease: DEBIAN_12, args: ['--apt'] })).toMatchObject({ status: 0, stdout: 'nodejs\n' });
    expect(check({ node: 'v18.19.0', policy: POLICY_DEBIAN_12, osRelease: DEBIAN_12, args: ['--apt'] })).toMatchObject({ status: 1, stdout: '' });
    expect(check({ osRelease: FEDORA, args: ['--apt'] })).toMatchObject({ status: 1, stdout: '' }); // no apt at all
  });

  it('points elsewhere to nodejs.org', () => {
    const r = check({ node: 'v16.20.2', osRelease: FEDORA });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('this system has Node.js v16.20.2');
    expect(r.stderr).toContain('https://nodejs.org/en/download');
  });

  it('passes, silently, with Node.js 20 or newer', () => {
    for (const node of ['v20.0.0', 'v20.19.2', 'v22.12.0', 'v24.1.0']) {
      expect(check({ node, policy: POLICY_DEBIAN_12, osRelease: DEBIAN_12 })).toEqual({ status: 0, stdout: '', stderr: '' });
    }
  });

  it('treats a `node` that prints no version as missing, not as new enough', () => {
    const r = check({ node: 'Segmentation fault', policy: POLICY_DEBIAN_12, osRelease: DEBIAN_12 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('pi-image needs Node.js 20 or newer');
  });
});

describe('scripts/setup-host', () => {
  it('checks Node.js with scripts/lib/check-node before installing or compiling anything that needs it', () => {
    const text = spawnSync('cat', [join(REPO, 'scripts/setup-host')], { encoding: 'utf8' }).stdout;
    const checked = text.indexOf('scripts/lib/check-node ||');
    expect(checked).toBeGreaterThan(0);
    // Before the long apt install, npm and the build.
    for (const later of ['apt-get install -y -q --no-install-recommends', 'npm ci', 'npm run build']) expect(text.indexOf(later)).toBeGreaterThan(checked);
    // Never `apt-get install nodejs` unconditionally (Debian 12 and Ubuntu 24.04 would get Node.js 18).
    expect(text).not.toMatch(/apt-get install[^\n]*\bnodejs\b/);
  });
});
