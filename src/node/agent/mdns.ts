import makeMdns from 'multicast-dns';

/**
 * The root answers mDNS queries for `<cluster>.local` with its LAN address (avahi-daemon keeps
 * answering for the host name). Not through avahi's static hosts file: avahi also publishes
 * a reverse record for that address and refuses the second one as a local name collision.
 * Event driven: the socket sleeps until a query arrives.
 */
export function publishClusterName(cluster: string, address: string, log: (line: string) => void): { close(): void } {
  const name = `${cluster}.local`;
  // Bound to every address (a socket bound to a unicast address never sees multicast), sending
  // and joining the group on the LAN address: answers leave through the LAN, not another NIC.
  const mdns = makeMdns({ interface: address, bind: '0.0.0.0', reuseAddr: true });
  mdns.on('error', (e: Error) => log(`mDNS: ${e.message}`));
  mdns.on('query', (query) => {
    const asked = query.questions.some((q) => q.name.toLowerCase() === name && (q.type === 'A' || (q.type as string) === 'ANY'));
    if (asked) mdns.respond({ answers: [{ name, type: 'A', class: 'IN', ttl: 120, flush: true, data: address }] });
  });
  log(`mDNS: ${name} → ${address}`);
  return { close: () => mdns.destroy() };
}
