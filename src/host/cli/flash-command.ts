import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { Command, Option } from 'commander';
import type { CardIdentity } from '../../shared/card-identity.js';
import { parsePublicKeyFile } from '../../shared/ssh-key.js';
import { clusterNameBeside, nthAddress, planCards, waitForNextCard } from '../flash/cards.js';
import { blockDevno } from '../flash/safety.js';
import { PiImageError } from '../errors.js';
import { configSourceLine, findConfigFile, loadConfig, type Config } from '../config/config.js';
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

/** Static addressing for this run: from the flags, else from the config's `network:` section. */
interface Addressing {
  /** The address of the card numbered `first` (the flags), or of node 1 (the config). */
  base: string;
  /** The card number `base` belongs to. */
  baseIndex: number;
  gateway?: string;
  dns: string[];
  link: string;
}

function addressing(options: Record<string, unknown>, config: Config | undefined, first: number): Addressing | undefined {
  const flagDns = typeof options.dns === 'string' ? options.dns.split(',').map((d) => d.trim()).filter(Boolean) : undefined;
  const net = config?.network;
  if (typeof options.address === 'string') {
    return { base: options.address, baseIndex: first, ...(options.gateway ? { gateway: options.gateway as string } : {}), dns: flagDns ?? [], link: (options.interface as string | undefined) ?? 'eth0' };
  }
  if (net?.addresses === 'static' && net.first_address) {
    const gateway = (options.gateway as string | undefined) ?? net.gateway;
    return { base: net.first_address, baseIndex: 1, ...(gateway ? { gateway } : {}), dns: flagDns ?? net.dns, link: (options.interface as string | undefined) ?? net.interface };
  }
  if (options.gateway || options.dns) throw new PiImageError('--gateway and --dns go with a static address', 'add --address CIDR (or static addresses in pi-image.yaml: network.addresses: static)');
  return undefined;
}

/** The identity of card number `index` from the command line and the config, or undefined when none was asked for. */
function identityOf(options: Record<string, unknown>, name: string | undefined, index: number, net: Addressing | undefined, identityProblem: (i: CardIdentity) => string | undefined): CardIdentity | undefined {
  const keys = ((options.sshKey as string[] | undefined) ?? []).flatMap((file) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PiImageError(`--ssh-key ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 'give a public key file, such as ~/.ssh/id_ed25519.pub');
    }
    const parsed = parsePublicKeyFile(text);
    if ('problem' in parsed) throw new PiImageError(`--ssh-key ${file} ${parsed.problem}`, 'give a public key file, such as ~/.ssh/id_ed25519.pub');
    return parsed.map((k) => k.line);
  });
  const identity: CardIdentity = {
    ...(name ? { hostname: name } : {}),
    ...(options.role ? { role: options.role as 'root' | 'worker' } : {}),
    sshKeys: keys,
    ...(net ? { network: { link: net.link, address: index === net.baseIndex ? net.base : nthAddress(net.base, index - net.baseIndex + 1), ...(net.gateway ? { gateway: net.gateway } : {}), dns: net.dns } } : {}),
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
    .option('--interface <name|mac>', 'the wired link --address is for: an interface name or a MAC address (default eth0, or network.interface of the config)')
    .option('--index <n>', "which node of the cluster this card is, from 1: names it <cluster>-<n> and, with static addresses in the config, gives it the nth address", (v) => Number(v))
    .option('-c, --config <file>', "pi-image.yaml whose cluster name and network: section (static addresses) the cards follow; default: ./pi-image.yaml when it exists")
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
  pi-image flash out/pi-image-pi5.img.zst 'cards/node-{n}.img' --count 4
  pi-image flash out/pi-image-pi5.img.zst /dev/sdb --index 3     # node 3: <cluster>-3, and its static address from pi-image.yaml`,
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
        const first = options.index as number | undefined;
        const configFile = await findConfigFile(options.config as string | undefined);
        const config = configFile ? await loadConfig(configFile, {}) : undefined;
        if (configFile && !options.json) process.stderr.write(configSourceLine(configFile));
        if (count > 1 && options.role) throw new PiImageError(`--role gives every one of the ${count} cards the same role`, 'flash the root card on its own with --role root, then the others with --count');
        const cards = planCards({ target, count, node: options.node as string | undefined, clusterName: clusterNameBeside(image) ?? config?.cluster.name, ...(first !== undefined ? { first } : {}) });
        if (options.verifyOnly && ['node', 'role', 'address', 'sshKey', 'index'].some((k) => options[k] !== undefined)) {
          throw new PiImageError('--verify-only writes nothing: it takes no --node, --role, --address, --ssh-key or --index');
        }
        // A card checked with --verify-only gets no identity (not even the config's static address).
        const net = options.verifyOnly ? undefined : addressing(options, config, first ?? 1);
        const identities = cards.map((card) => (options.verifyOnly ? undefined : identityOf(options, card.name, card.index, net, identityProblem)));
        const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
        const say = (line: string) => (options.json ? reporter.emit({ type: 'tool-output', stage: 'flash', line }) : process.stderr.write(`\n${line}\n`));
        for (const [i, card] of cards.entries()) {
          if (i > 0 && blockDevno(card.target)) await waitForNextCard(card.target, { signal, say });
          if (cards.length > 1) say(`card ${i + 1} of ${cards.length}${card.name ? `: ${card.name}` : ''} → ${card.target}`);
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
          reporter.emit({ type: 'result', data: result });
          if (!options.json) process.stderr.write(`\n${summary(result)}\n`);
        }
      }),
    );
}
