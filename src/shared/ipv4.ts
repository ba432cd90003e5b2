/** A dotted-quad IPv4 literal and nothing else: no host name, prefix, port, white space or leading zero. */
export const isIPv4 = (s: unknown): s is string => typeof s === 'string' && /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s);
