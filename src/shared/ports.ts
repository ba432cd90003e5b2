/** Network ports the build, the node and the emulator agree on. */

/** Discovery datagrams (UDP broadcast). */
export const DISCOVERY_PORT = 47474;
/** The TCP link a worker holds to its root's agent: kernel keepalive notices a root that died. */
export const ROOT_LINK_PORT = 47475;
/** The engine's own HTTP port on the root: loopback only, the API front is what the LAN sees. */
export const ENGINE_PRIVATE_PORT = 8081;
/** The API front's port unless `cluster.api_port` says otherwise (the config schema's default). */
export const DEFAULT_API_PORT = 8080;
/** OTA between nodes (members only, like the engine ports): the root serves bundles, workers take its commands. */
export const OTA_PORT = 47476;
/** OTA from the cluster's owner to the root (`pi-image ota push/status`): open on the LAN, every request signed by an update key. */
export const OTA_PUSH_PORT = 47477;
