/**
 * Every path the build writes and the node reads, in one place. Absolute paths as the node
 * sees them; `inRootfs()` gives the same path as an entry of the root filesystem's tar stream.
 */

/** What the build tells the agent (see NodeSettings). */
export const NODE_SETTINGS_PATH = '/etc/pi-image/node.json';
/** The resolved tuning profile (see TuningState): what doctor and apply-tuning check and apply. */
export const TUNING_STATE_PATH = '/etc/pi-image/tuning.json';
/** Public keys of the login user, baked in at build time. */
export const AUTHORIZED_KEYS_PATH = '/etc/pi-image/authorized_keys';
/** Public keys whose signed OTA bundles this node accepts (ota.trusted_keys), one PEM file each. */
export const OTA_TRUSTED_KEYS_DIR = '/etc/pi-image/ota-keys';

/** The boot partition (FAT) as the node mounts it. */
export const BOOT_DIR = '/boot/firmware';
/** Where the build puts secrets on the boot partition; first boot moves them to SECRETS_DIR. */
export const BOOT_SECRETS_DIR = `${BOOT_DIR}/pi-image`;
/**
 * One card's identity on its boot partition, relative to BOOT_DIR: cloud-init's NoCloud files
 * as Raspberry Pi Imager writes them, and pi-image's own node file (`pi-image flash --node`).
 * First boot applies them and wipes them off the FAT (they may hold password hashes or Wi-Fi keys).
 */
export const CARD_FILES = { userData: 'user-data', networkConfig: 'network-config', metaData: 'meta-data', node: 'pi-image/node.json' } as const;
export const SECRETS_DIR = '/etc/pi-image';
export const CLUSTER_SECRET = 'cluster.secret';
export const API_TOKEN = 'api.token';

export const STATE_DIR = '/var/lib/pi-image';
export const FIRST_BOOT_STAMP = `${STATE_DIR}/first-boot.done`;
export const NODE_ID_PATH = `${STATE_DIR}/node-id`;
/** The role this node took and the root it follows, kept across reboots and re-flashes. */
export const CLUSTER_STATE_PATH = `${STATE_DIR}/cluster.json`;
/** What a card's node file set for this node (its role), kept once the file is gone from the FAT. */
export const CARD_SETTINGS_PATH = `${STATE_DIR}/card.json`;
/** The static address a card's files gave, for systemd-networkd (sorts before the image's DHCP default). */
export const CARD_NETWORK_PATH = '/etc/systemd/network/10-pi-image-card.network';

export const RUN_DIR = '/run/pi-image';
export const STATUS_SOCKET = `${RUN_DIR}/agent.sock`;
/** The engine's launch line, written by the agent and read by the engine unit. */
export const ENGINE_ENV_PATH = `${RUN_DIR}/engine.env`;
/** The engine unit's last exit, `<invocation id> <result> <exit code> <exit status>`, written by its ExecStopPost for the agent. */
export const ENGINE_EXIT_PATH = `${RUN_DIR}/engine-exit`;

/**
 * Engine runtimes as versioned folders, the one layout an image's first runtime and an OTA
 * update share: versions/<version>/ (never changed once in place) and a `current` link the
 * engine runs from, switched by renaming a new link over it.
 */
export const RUNTIME_DIR = '/opt/pi-image/runtime';
export const RUNTIME_CURRENT = `${RUNTIME_DIR}/current`;
export const runtimeVersionDir = (version: string) => `${RUNTIME_DIR}/versions/${version}`;
/** In each runtime version's folder: its engine, version and each role's program (RuntimeInfo). */
export const RUNTIME_INFO = '.pi-image-runtime.json';
/** Models in the same layout: versions/<version>/ and `current`, the engine loads the model `current` names. */
export const MODEL_DIR = `${STATE_DIR}/model`;
export const MODEL_CURRENT = `${MODEL_DIR}/current`;
export const modelVersionDir = (version: string) => `${MODEL_DIR}/versions/${version}`;
/** In each model version's folder: its engine, version and file names (ModelInfo). */
export const MODEL_INFO = '.pi-image-model.json';
/** OTA bundles the root received, and its record of the update in progress. */
export const OTA_DIR = `${STATE_DIR}/ota`;
/** The unit every engine runs in, so the tuning profile's drop-in applies to it. */
export const ENGINE_UNIT = 'pi-image-engine.service';

/** An absolute node path as a root filesystem entry (no leading slash). */
export const inRootfs = (path: string) => path.replace(/^\/+/, '');
