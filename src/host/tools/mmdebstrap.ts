import { checkUnitName } from '../catalog/unit-name.js';
import type { Plan } from '../plan/plan.js';
import type { Reporter } from '../progress.js';
import { runTool, shellQuote } from './run.js';

/** mmdebstrap's own phase messages, in the order it prints them: our progress measure. */
const PHASES: [RegExp, string][] = [
  [/chroot architecture/, 'preparing'],
  [/automatically chosen format|setting up|running setup-hook/i, 'setting up the chroot'],
  [/downloading packages/i, 'downloading packages'],
  [/extracting archives/i, 'extracting packages'],
  [/installing essential/i, 'installing essential packages'],
  [/installing remaining/i, 'installing the remaining packages'],
  [/running --customize-hook|running special hook|customize/i, 'running customize hooks'],
  [/cleaning package lists/i, 'cleaning up'],
  [/creating tarball/i, 'writing the rootfs tarball'],
  [/success in/i, 'done'],
];

/** The mmdebstrap command line for a plan's base rootfs. Pure: unit-tested. Throws on a unit name that is not one. */
export function mmdebstrapArgs(base: Plan['base'], output: string, opts: { root: boolean; keyringDir?: string; releaseDatesFile?: string }): string[] {
  const args = [
    `--mode=${opts.root ? 'root' : 'unshare'}`,
    `--arch=${base.arch}`,
    `--variant=${base.variant}`,
    `--components=${base.components.join(',')}`,
    '--format=tar',
  ];
  if (base.packages.length) args.push(`--include=${base.packages.join(',')}`);
  if (base.keyrings.length && opts.keyringDir) {
    // Trusted while building (with Debian's own key), and installed for apt on the node.
    args.push(`--keyring=${opts.keyringDir}`);
    for (const k of base.keyrings) args.push(`--setup-hook=copy-in ${opts.keyringDir}/${k.name} /etc/apt/trusted.gpg.d/`);
  }
  if (!base.checkValidUntil) args.push('--aptopt=Acquire::Check-Valid-Until "false"');
  args.push('--aptopt=Acquire::Retries "3"');
  if (base.initramfsModules?.length) {
    // Before the kernel is installed: a small initramfs (only the listed modules) builds in
    // seconds under emulation instead of minutes.
    const modules = base.initramfsModules.join(' ');
    args.push(
      `--setup-hook=mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks" && printf 'MODULES=list\\n' > "$1/etc/initramfs-tools/conf.d/pi-image.conf" && printf '#!/bin/sh\\n[ "$1" = prereqs ] && exit 0\\n. /usr/share/initramfs-tools/hook-functions\\nfor m in ${modules}; do manual_add_modules "$m"; done\\n' > "$1/etc/initramfs-tools/hooks/pi-image-modules" && chmod 0755 "$1/etc/initramfs-tools/hooks/pi-image-modules"`,
    );
  }
  // The hook runs in a shell as root: a checked unit name, quoted, after `--`.
  for (const unit of base.enableUnits) args.push(`--customize-hook=chroot "$1" systemctl enable -- ${shellQuote(checkUnitName(unit, 'base_enable'))}`);
  // The archive's own dates (its Release files), before the lists go: the default
  // SOURCE_DATE_EPOCH, the same on every machine that builds from the same archive state.
  if (opts.releaseDatesFile) args.push(`--customize-hook=cat "$1"/var/lib/apt/lists/*Release 2>/dev/null | sed -n 's/^Date: //p' > ${shellQuote(opts.releaseDatesFile)}; true`);
  // Apt's downloaded lists and archives are not part of an image.
  args.push('--skip=cleanup/apt/lists', '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin');
  args.push(base.suite, output);
  for (const mirror of base.mirrors) args.push(`deb ${mirror} ${base.suite} ${base.components.join(' ')}`);
  for (const src of base.extraSources) {
    for (const uri of src.uris) for (const suite of src.suites) args.push(`deb ${uri} ${suite} ${src.components.join(' ')}`);
  }
  return args;
}

export async function runMmdebstrap(
  base: Plan['base'],
  output: string,
  opts: { root: boolean; reporter: Reporter; signal?: AbortSignal; keyringDir?: string; releaseDatesFile?: string; sourceDateEpoch?: number },
): Promise<void> {
  const args = mmdebstrapArgs(base, output, { root: opts.root, keyringDir: opts.keyringDir, releaseDatesFile: opts.releaseDatesFile });
  let phase = 0;
  const tail: string[] = [];
  try {
    await runTool('mmdebstrap', args, {
      stage: 'base',
      reporter: opts.reporter,
      signal: opts.signal,
      // mmdebstrap, dpkg and mkinitramfs stamp what they make with it instead of the clock.
      env: opts.sourceDateEpoch !== undefined ? { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) } : undefined,
      hint: 'see the last lines of mmdebstrap above; a package name, suite or mirror is the usual cause',
      onLine: (line) => {
        tail.push(line);
        if (tail.length > 200) tail.shift();
        const next = PHASES.findIndex(([re], i) => i >= phase && re.test(line));
        if (next >= 0) {
          phase = next;
          opts.reporter.emit({ type: 'stage-progress', stage: 'base', fraction: next / (PHASES.length - 1), detail: PHASES[next]?.[1] });
        }
      },
    });
  } catch (error) {
    throw explainMmdebstrapFailure(error, tail, base);
  }
}

/** Turns apt's usual failures into a cause the user can act on. */
function explainMmdebstrapFailure(error: unknown, lines: string[], base: Plan['base']): unknown {
  if (!(error instanceof Error) || !('stage' in error)) return error;
  const text = lines.join('\n');
  const stageError = error as Error & { hint?: string };
  const unreachable = /Could not connect|Temporary failure resolving|Could not resolve|Connection refused|Unable to connect|No route to host|Connection timed out/i.test(text);
  const expired = /is not valid yet|is expired|Valid-Until/i.test(text);
  const missing = /Unable to locate package (\S+)|Package '?(\S+?)'? has no installation candidate/.exec(text);
  if (unreachable) {
    error.message = `base: cannot reach the Debian mirror (${base.mirrors.join(', ')})`;
    Object.assign(stageError, { hint: 'check the network and the mirrors: setting in pi-image.yaml (or --mirror)' });
  } else if (expired) {
    error.message = `base: the archive's Release file for ${base.suite} is past its Valid-Until date`;
    Object.assign(stageError, { hint: 'for an archive snapshot set apt: { check_valid_until: false } (or --no-check-valid-until)' });
  } else if (missing) {
    error.message = `base: package ${missing[1] ?? missing[2]} is not in ${base.suite} (${base.components.join(', ')})`;
    Object.assign(stageError, { hint: 'check packages: in pi-image.yaml, the board profile and its layers' });
  }
  return error;
}

/** The newest `Date:` of an archive's Release files (one date per line, RFC 2822), in seconds; undefined when there is none. */
export function newestReleaseDate(dates: string): number | undefined {
  const seconds = dates
    .split('\n')
    .map((line) => Date.parse(line.trim()))
    .filter((ms) => Number.isFinite(ms))
    .map((ms) => Math.floor(ms / 1000));
  return seconds.length ? Math.max(...seconds) : undefined;
}

/**
 * The archive's Release date before anything is installed: the InRelease of each mirror's
 * suite, fetched once (a few kB). Undefined when no mirror answers; the date is then read
 * from the lists mmdebstrap downloads.
 */
export async function fetchReleaseDate(base: Plan['base'], signal?: AbortSignal): Promise<number | undefined> {
  const urls = [
    ...base.mirrors.map((m) => `${m.replace(/\/$/, '')}/dists/${base.suite}/InRelease`),
    ...base.extraSources.flatMap((src) => src.uris.flatMap((u) => src.suites.map((suite) => `${u.replace(/\/$/, '')}/dists/${suite}/InRelease`))),
  ];
  const dates: string[] = [];
  for (const url of urls) {
    const text = await fetch(url, { signal: AbortSignal.any([AbortSignal.timeout(30_000), ...(signal ? [signal] : [])]) })
      .then((r) => (r.ok ? r.text() : ''), () => '');
    const date = /^Date: (.+)$/m.exec(text)?.[1];
    if (date) dates.push(date);
  }
  return newestReleaseDate(dates.join('\n'));
}
