import { memberSetCommands, renderFirewall } from '../cluster/firewall.js';
import type { CommandResult } from '../../shared/tuning/system.js';
import { run } from '../sys.js';

/** Runs `nft -f -` with a script; a test passes one that runs nft in a network namespace. */
export type NftScript = (script: string) => Promise<CommandResult>;

const nftScript: NftScript = (script) => run('nft', ['-f', '-'], { input: script });

/** nft's exit code and its errors, on one log line. */
const why = (r: CommandResult) => {
  const errors = r.stderr.trim().replace(/\s*\n\s*/g, '; ');
  return `exit ${r.code}${errors ? `: ${errors}` : ''}`;
};

/**
 * Keeps the engine-port firewall: the whole table once (at agent start), then only its member
 * set. Each load is one nft transaction, so the ports are never open while the rules change.
 *
 * Something else may remove the table meanwhile (`nft flush ruleset`, Debian's
 * nftables.service loading /etc/nftables.conf), which leaves the ports open to everyone. A set
 * update then fails, since the set went with the table: that failure is the check that the
 * table is still there, at no extra cost, and the whole table is loaded again.
 */
export class FirewallSet {
  private loaded = false;

  constructor(
    private readonly enginePorts: number[],
    private readonly log: (line: string) => void,
    private readonly nft: NftScript = nftScript,
  ) {}

  async apply(members: string[]): Promise<void> {
    if (this.loaded) {
      const update = await this.nft(memberSetCommands(members));
      if (update.code !== 0) {
        this.loaded = false;
        this.log(`firewall: could not update the member set (${why(update)}); loading the whole table again`);
      }
    }
    if (!this.loaded) {
      const load = await this.nft(renderFirewall({ enginePorts: this.enginePorts, members }));
      if (load.code !== 0) throw new Error(`nft could not load the engine-port firewall (${why(load)}); the engine stays stopped`);
      this.loaded = true;
    }
    this.log(`firewall: engine ports open to ${members.length ? members.join(', ') : 'no one'}`);
  }
}
