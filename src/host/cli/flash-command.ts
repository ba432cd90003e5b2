import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { Command, Option } from 'commander';
import type { CardIdentity } from '../../shared/card-identity.js';
import { clusterNameBeside, nthAddress, planCards, waitForNextCard } from '../flash/cards.js';
import { blockDevno } from '../flash/safety.js';
import { PiImageError } from '../errors.js';
import type { FlashResult } from '../flash/flash.js';
import { formatBytes, type DeviceInfo } from '../flash/safety.js';
import { formatSeconds } from '../progress.js';
import { runCancellable } from './cancellable.js';

async function askOnTerminal(device: DeviceInfo): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(
      `\nAbout to overwrite ${device.path}: ${device.model}, ${formatBytes(device.size)}${device.removable ? ', removable' : ', NOT removable'}.\nEverything on it will be lost. Type 'yes' to go on: `,
    );
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The identity of card `index` from the command line, or undefined when none was asked for. */
function identityOf(options: Record<string, unknown>, name: string | undefined, index: number, identityProblem: (i: CardIdentity) => string | undefined): CardIdentity | undefined {
  const keys = ((options.sshKey as string[] | undefined) ?? []).flatMap((file) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PiImageError(`--ssh-key ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 'give a public key file, such as ~/.ssh/id_ed25519.pub');
    }
    return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  });
  const address = options.address as string | undefined;
  const identity: CardIdentity = {
    ...(name ? { hostname: name } : {}),
    ...(options.role ? { role: options.role as 'root' | 'worker' } : {}),
    sshKeys: keys,
    ...(address
      ? {
          network: {
            link: (options.interface as string | undefined) ?? 'eth0',
            address: index === 1 ? address : nthAddress(address, index),
            ...(options.gateway ? { gateway: options.gateway as string } : {}),
            dns: ((options.dns as string | undefined) ?? '').split(',').map((d) => d.trim()).filter(Boolean),
          },
        }
      : {}),
  };
  if (!identity.hostname && !identity.role && !identity.network && !keys.length) return undefined;
  const problem = identityProblem(identity);
  if (problem) throw new PiImageError(problem);
  return identity;
}

function summary(result: FlashResult): string {
  const what = result.verifyOnly ? 'checked' : 'wrote';
  return `${what} ${result.verifyOnly ? result.target : formatBytes(result.bytesWritten)} ${result.bmap ? `(bmap ${result.bmap})` : '(every byte, no bmap)'} ${result.verifyOnly ? 'against the image' : `to ${result.target}`} in ${formatSeconds(result.writeSeconds + result.verifySeconds)}${result.verified ? ', verified' : ', NOT verified (--no-verify)'}${result.identityFiles ? `; node identity in its boot partition (${result.identityFiles.join(', ')})` : ''}`;
}

export function flashCommand(): Command {
  return new Command('flash')
    .description('Write an image (.img or .img.zst) to a card, disk or file: only the blocks its .bmap maps, then read them back and check them; optionally give each card its own node identity')
    .argument('[image]', 'the .img or .img.zst (its .bmap beside it is used)')
    .argument('[target]', 'a block device (/dev/sdX, /dev/mmcblkN) or a regular file; with --count, file names with {n} in them')
    .option('--bmap <file>', 'the block map to use (default: <name>.bmap beside the image)')
    .option('--no-bmap', 'write every byte of the image, ignoring any bmap')
    .option('--no-verify', 'skip reading the written blocks back')
    .option('--verify-only', 'write nothing: check the target against the image (a card given an identity differs in its boot partition)')
    .option('--force', 'write a device that is not removable (never a mounted one or the running system)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--node <name>', "this card's host name (with --count: the names' prefix, NAME-1 … NAME-N; default there: the cluster name)")
    .addOption(new Option('--role <role>', "this card's role, whatever the image was built as").choices(['root', 'worker']))
    .option('--address <cidr>', 'a static IPv4 address with prefix length, e.g. 192.168.1.21/24 (with --count: the first card\'s; the next cards get the next addresses)')
    .option('--gateway <ip>', 'the default gateway for --address')
    .option('--dns <ips>', 'DNS servers for --address, comma-separated')
    .option('--interface <name|mac>', 'the wired link --address is for: an interface name or a MAC address', 'eth0')
    .option('--ssh-key <file>', "a public key file for the login user, added to the image's (repeatable)", collect)
    .option('--count <n>', 'flash this many cards in a row: one card reader (waits for each next card) or file names with {n}', (v) => Number(v), 1)
    .option('--list', 'list the disks that could be written, and exit')
    .option('-v, --verbose', "stream the underlying tools' output")
    .option('--json', 'print machine-readable events (NDJSON) on stdout instead of the progress display')
    .addHelpText(
      'after',
      `
Node identity: --node, --role, --address and --ssh-key write cloud-init files (user-data,
network-config, meta-data, as Raspberry Pi Imager does) and pi-image/node.json into the card's
boot partition after it is verified. The node's first boot applies them (host name, role,
static address, SSH keys) and wipes them off the card. Cards customised in Raspberry Pi Imager
become nodes the same way.

Examples:
  pi-image flash out/pi-image-pi5.img.zst /dev/sdb --node llm-root --role root
  pi-image flash out/pi-image-pi5.img.zst /dev/sdb --count 3 --address 192.168.1.21/24 --gateway 192.168.1.1
  pi-image flash out/pi-image-pi5.img.zst 'cards/node-{n}.img' --count 4`,
    )
    .action((image: string | undefined, target: string | undefined, options: Record<string, unknown>) =>
      runCancellable(options, async ({ reporter, signal }) => {
        // Loaded here, not at start-up: every command starts quicker.
        const [{ flash }, { identityProblem }, { formatCandidates, listCandidates }] = await Promise.all([import('../flash/flash.js'), import('../flash/card-files.js'), import('../flash/list.js')]);
        if (options.list) {
          const list = await listCandidates(reporter);
          if (options.json) reporter.emit({ type: 'result', data: list });
          else process.stdout.write(formatCandidates(list));
          return;
        }
        if (!image || !target) throw new PiImageError('usage: pi-image flash <image.img | image.img.zst> <target>  (or --list)');
        const count = options.count as number;
        if (count > 1 && options.role) throw new PiImageError(`--role gives every one of the ${count} cards the same role`, 'flash the root card on its own with --role root, then the others with --count');
        const cards = planCards({ target, count, node: options.node as string | undefined, clusterName: clusterNameBeside(image) });
        const identities = cards.map((card) => identityOf(options, card.name, card.index, identityProblem));
        if (options.verifyOnly && identities.some(Boolean)) throw new PiImageError('--verify-only writes nothing: it takes no --node, --role, --address or --ssh-key');
        const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
        const say = (line: string) => (options.json ? reporter.emit({ type: 'tool-output', stage: 'flash', line }) : process.stderr.write(`\n${line}\n`));
        const results: FlashResult[] = [];
        for (const [i, card] of cards.entries()) {
          if (i > 0 && blockDevno(card.target)) await waitForNextCard(card.target, { signal, say });
          if (cards.length > 1) say(`card ${card.index} of ${cards.length}${card.name ? `: ${card.name}` : ''} → ${card.target}`);
          const identity = identities[i];
          const result = await flash({
            image,
            target: card.target,
            bmap: options.bmap as string | false | undefined,
            verify: options.verify !== false,
            verifyOnly: Boolean(options.verifyOnly),
            force: Boolean(options.force),
            ...(identity ? { identity } : {}),
            confirm: options.yes ? async () => true : interactive ? askOnTerminal : undefined,
            reporter,
            signal,
          });
          results.push(result);
          reporter.emit({ type: 'result', data: result });
          if (!options.json) process.stderr.write(`\n${summary(result)}\n`);
        }
      }),
    );
}
