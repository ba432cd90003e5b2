/** Network ports the build, the node and the emulator agree on. */

/** Discovery datagrams (UDP broadcast). */
export const DISCOVERY_PORT = 47474;
/** The TCP link a worker holds to its root's agent: kernel keepalive notices a root that died. */
export const ROOT_LINK_PORT = 47475;
/** The engine's own HTTP port on the root: loopback only, the API front is what the LAN sees. */
export const ENGINE_PRIVATE_PORT = 8081;
/** The API front's port unless `cluster.api_port` says otherwise (the config schema's default). */
export const DEFAULT_API_PORT = 8080;
