import { readFile } from 'node:fs/promises';

/**
 * What the build tells the node agent (/etc/pi-image/node.json): the cluster it belongs to,
 * the role it was built for, its engine and model. Written by `pi-image build` from
 * pi-image.yaml; read once at agent start.
 */
export interface NodeSettings {
  cluster: { name: string; size: number; apiPort: number; discoveryPort: number };
  role: 'auto' | 'root' | 'worker';
  engine: { name: 'llama.cpp' | 'dllama'; binDir: string; contextLength: number };
  model: { path: string; name: string; tokenizer?: string } | null;
  user: { name: string };
}

export const NODE_SETTINGS_PATH = '/etc/pi-image/node.json';
/** Where the build puts secrets on the boot partition; first boot moves them to SECRETS_DIR. */
export const BOOT_SECRETS_DIR = '/boot/firmware/pi-image';
export const SECRETS_DIR = '/etc/pi-image';
export const CLUSTER_SECRET = 'cluster.secret';
export const API_TOKEN = 'api.token';
/** Public keys of the login user, baked in at build time. */
export const AUTHORIZED_KEYS_PATH = '/etc/pi-image/authorized_keys';
export const STATE_DIR = '/var/lib/pi-image';
export const RUN_DIR = '/run/pi-image';
export const STATUS_SOCKET = `${RUN_DIR}/agent.sock`;
export const ENGINE_ENV_PATH = `${RUN_DIR}/engine.env`;
/** The engine's own HTTP port on the root (loopback only; the API front is what the LAN sees). */
export const ENGINE_PRIVATE_PORT = 8081;
export const DISCOVERY_PORT = 47474;
export const ENGINE_BIN_DIR = '/opt/pi-image/engine/bin';
export const MODEL_DIR = '/var/lib/pi-image/model';

export async function loadNodeSettings(path = NODE_SETTINGS_PATH): Promise<NodeSettings> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as NodeSettings;
  } catch (e) {
    throw new Error(`cannot read this node's settings (${path}): ${(e as Error).message}; the image was not built with the cluster layer`);
  }
}
