import { chown, mkdir, readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../shared/atomic-write.js';
import { join } from 'node:path';
import { clusterHostname, nodeId } from './identity.js';
import { run } from './sys.js';
import { syncDir, wipeAndDelete } from './wipe.js';
import { takeCardIdentity } from './card-setup.js';
import { API_TOKEN, AUTHORIZED_KEYS_PATH, BOOT_SECRETS_DIR, CLUSTER_SECRET, FIRST_BOOT_STAMP, NODE_ID_PATH, SECRETS_DIR, STATE_DIR } from '../shared/node-paths.js';
import type { NodeSettings } from '../shared/node-settings.js';
import { MIN_SECRET_CHARS, secretProblem } from '../shared/secrets.js';


type Log = (line: string) => void;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

async function must(command: string, args: string[]): Promise<string> {
  const r = await run(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/**
 * Moves a secret off the FAT partition: copied to /etc/pi-image (0600) and read back first,
 * then its bytes on the FAT overwritten and synced before the file is deleted (a FAT delete
 * alone leaves the data in its clusters). A power cut at any point leaves the secret in one
 * place at least: a FAT copy that is not a usable secret (the zeros of a wipe whose delete
 * was cut short) is never copied, so it cannot replace the good copy in /etc.
 */
export async function moveSecretOffBootPartition(name: string, log: Log, bootDir = BOOT_SECRETS_DIR, secretsDir = SECRETS_DIR): Promise<boolean> {
  const source = join(bootDir, name);
  const target = join(secretsDir, name);
  if (!(await exists(source))) return false;
  const data = await readFile(source);
  const problem = secretProblem(data);
  if (problem) {
    const kept = await readFile(target).catch(() => undefined);
    if (kept && !secretProblem(kept)) {
      await wipeAndDelete(source, bootDir);
      log(`${source} ${problem}: not copied; kept ${target} and deleted the boot partition copy (a power cut between its wipe and its delete leaves it so; to replace the secret, put a usable ${name} there again)`);
      return false;
    }
    log(`error: ${source} ${problem}, and there is no usable ${target}: nothing copied, this node has no ${name}. Put the cluster's ${name} (the same file as its other nodes', at least ${MIN_SECRET_CHARS} characters) on the boot partition as pi-image/${name} and reboot`);
    return false;
  }
  await mkdir(secretsDir, { recursive: true });
  await writeFileAtomic(target, data, 0o600);
  // The new name must be on disk before the FAT copy is wiped, or a power cut could lose both.
  await syncDir(secretsDir);
  const copy = await readFile(target).catch(() => undefined);
  if (!copy?.equals(data)) throw new Error(`${target} does not read back as ${source} was; left ${source} in place`);
  await wipeAndDelete(source, bootDir);
  log(`moved ${name} from the boot partition to ${secretsDir} (mode 0600) and wiped it there`);
  return true;
}

async function setHostname(name: string, log: Log): Promise<void> {
  await writeFileAtomic('/etc/hostname', `${name}\n`);
  const hosts = await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n');
  const lines = hosts.split('\n').filter((l) => !/^127\.0\.1\.1\s/.test(l));
  lines.splice(1, 0, `127.0.1.1\t${name}`);
  await writeFileAtomic('/etc/hosts', lines.join('\n'));
  await must('hostname', [name]);
  log(`hostname ${name}`);
}

/** The login user: SSH keys only (its password field can never match), passwordless sudo; root locked. */
async function setUpLoginUser(user: string, log: Log): Promise<void> {
  if ((await run('id', ['-u', user])).code !== 0) {
    const groups = ['sudo', 'adm', 'systemd-journal'].filter(Boolean);
    const present = (await Promise.all(groups.map(async (g) => ((await run('getent', ['group', g])).code === 0 ? g : undefined)))).filter(Boolean) as string[];
    await must('useradd', ['--create-home', '--shell', '/bin/bash', '--comment', 'pi-image login (SSH keys only)', ...(present.length ? ['--groups', present.join(',')] : []), user]);
  }
  await must('usermod', ['--password', '*', user]);
  await must('passwd', ['--lock', 'root']);
  if (await exists('/etc/sudoers.d')) await writeFileAtomic(`/etc/sudoers.d/010-pi-image-${user}`, `${user} ALL=(ALL) NOPASSWD:ALL\n`, 0o440);
  const keys = await readFile(AUTHORIZED_KEYS_PATH, 'utf8').catch(() => '');
  const home = (await must('getent', ['passwd', user])).split(':')[5] as string;
  const uid = Number(await must('id', ['-u', user]));
  const gid = Number(await must('id', ['-g', user]));
  await mkdir(join(home, '.ssh'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(home, '.ssh/authorized_keys'), keys, 0o600);
  await chown(join(home, '.ssh'), uid, gid);
  await chown(join(home, '.ssh/authorized_keys'), uid, gid);
  const count = keys.split('\n').filter((l) => l.trim() && !l.startsWith('#')).length;
  log(`login user ${user}: ${count} SSH key(s), no password; root locked${count ? '' : ' (no keys were given at build time: nobody can log in over SSH)'}`);
}

/**
 * Once per card, idempotent: every step may run again after a reboot halfway; the stamp is
 * written last. The machine-id and SSH host keys are made by systemd and
 * pi-image-ssh-keygen.service on this same first boot.
 */
export async function firstBoot(settings: NodeSettings, log: Log): Promise<void> {
  const secretMoved = await moveSecretOffBootPartition(CLUSTER_SECRET, log);
  await moveSecretOffBootPartition(API_TOKEN, log);
  const card = await takeCardIdentity(log);
  if (await exists(FIRST_BOOT_STAMP)) {
    // A card given an identity after its first boot (its files dropped on the boot partition) takes it now.
    if (card?.hostname) await setHostname(card.hostname, log);
    if (card?.sshKeys.length) await setUpLoginUser(settings.user.name, log);
    log(secretMoved ? 'first boot was done before; a new cluster secret was taken from the boot partition' : 'first boot was done before');
    return;
  }
  await mkdir(STATE_DIR, { recursive: true });
  const { id, from } = await nodeId();
  await writeFileAtomic(NODE_ID_PATH, `${id}\n`);
  log(`node id ${id} (from the ${from})`);
  await setHostname(card?.hostname ?? clusterHostname(settings.cluster.name, id), log);
  await setUpLoginUser(settings.user.name, log);
  if (!(await exists(join(SECRETS_DIR, CLUSTER_SECRET)))) log(`warning: no cluster secret (${join(BOOT_SECRETS_DIR, CLUSTER_SECRET)} was missing or unusable): this node cannot join a cluster`);
  await writeFileAtomic(FIRST_BOOT_STAMP, `${new Date().toISOString()}\n`);
}
