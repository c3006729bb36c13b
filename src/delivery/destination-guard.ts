/*
 * Where webhooks may go. A webhook's URL is written by whoever may write rules, and parts of it come
 * from row data, so without a guard a rule could make the daemon POST (signed) to the database host's
 * admin ports, a cloud metadata endpoint or anything else only the daemon's network can reach.
 *
 * A destination is refused when any address its host name resolves to is not a public unicast
 * address, unless RULEBOOK_WEBHOOK_ALLOW names it. The check happens after DNS resolution, and the
 * connection is then made to the checked addresses only (see `lookupPinnedTo`), so that a name which
 * resolves to a public address when checked and to 127.0.0.1 when connecting (DNS rebinding) cannot
 * slip through.
 *
 * RULEBOOK_WEBHOOK_ALLOW is a comma-separated list of entries, each one of:
 *   host            a host name or IP address (IPv6 in brackets or bare): any port
 *   host:port       that host on that port only ([::1]:8080 for IPv6)
 *   address/bits    a CIDR block of addresses, any port (10.0.0.0/8, fd00::/8)
 * A host-name entry allows that name whatever it resolves to; an IP or CIDR entry allows those
 * addresses whichever name led to them.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** What is not a public unicast destination (RFC 6890 special-purpose and multicast blocks). */
const NON_PUBLIC: readonly (readonly [string, number, 'ipv4' | 'ipv6', string])[] = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified ("this network") address'],
  ['10.0.0.0', 8, 'ipv4', 'a private address'],
  ['100.64.0.0', 10, 'ipv4', 'a shared (carrier-grade NAT) address'],
  ['127.0.0.0', 8, 'ipv4', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address'],
  ['172.16.0.0', 12, 'ipv4', 'a private address'],
  ['192.0.0.0', 24, 'ipv4', 'an IETF protocol address'],
  ['192.0.2.0', 24, 'ipv4', 'a documentation address'],
  ['192.168.0.0', 16, 'ipv4', 'a private address'],
  ['198.18.0.0', 15, 'ipv4', 'a benchmarking address'],
  ['198.51.100.0', 24, 'ipv4', 'a documentation address'],
  ['203.0.113.0', 24, 'ipv4', 'a documentation address'],
  ['224.0.0.0', 4, 'ipv4', 'a multicast address'],
  ['240.0.0.0', 4, 'ipv4', 'a reserved or broadcast address'],
  ['::', 128, 'ipv6', 'the unspecified address'],
  ['::1', 128, 'ipv6', 'a loopback address'],
  // IPv4-compatible addresses (deprecated); IPv4-mapped ones (::ffff:a.b.c.d) are checked as IPv4.
  ['::', 96, 'ipv6', 'an IPv4-compatible address'],
  ['100::', 64, 'ipv6', 'a discard-only address'],
  // Translation and tunnelling prefixes carry an IPv4 address inside: through a NAT64 gateway
  // 64:ff9b::a00:1 reaches 10.0.0.1. Webhooks have no need of them, so they are refused whole.
  ['64:ff9b::', 96, 'ipv6', 'a NAT64 address (an IPv4 address inside IPv6)'],
  ['64:ff9b:1::', 48, 'ipv6', 'a NAT64 address (an IPv4 address inside IPv6)'],
  ['2002::', 16, 'ipv6', 'a 6to4 address (an IPv4 address inside IPv6)'],
  ['2001::', 32, 'ipv6', 'a Teredo address (an IPv4 address inside IPv6)'],
  ['2001:db8::', 32, 'ipv6', 'a documentation address'],
  ['fc00::', 7, 'ipv6', 'a private (unique local) address'],
  ['fe80::', 10, 'ipv6', 'a link-local address'],
  ['fec0::', 10, 'ipv6', 'a site-local address'],
  ['ff00::', 8, 'ipv6', 'a multicast address'],
];

const NON_PUBLIC_LISTS = NON_PUBLIC.map(([network, bits, family, what]) => {
  const list = new BlockList();
  list.addSubnet(network, bits, family);
  return { list, what };
});

function familyOf(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4';
}

/** Why `address` is not a public destination, or undefined when it is one. */
export function nonPublicReason(address: string): string | undefined {
  const family = familyOf(address);
  // BlockList matches IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) against IPv4 blocks too.
  return NON_PUBLIC_LISTS.find(({ list }) => list.check(address, family))?.what;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function normalHost(host: string): string {
  return stripBrackets(host).toLowerCase().replace(/\.$/, '');
}

interface HostEntry {
  readonly host: string;
  readonly port: number | undefined;
}

export class AllowListError extends Error {
  override name = 'AllowListError';
}

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$/;

function parsePort(text: string, entry: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new AllowListError(
      `RULEBOOK_WEBHOOK_ALLOW: "${entry}" has port "${text}", not a port from 1 to 65535`,
    );
  }
  return port;
}

/** The destinations RULEBOOK_WEBHOOK_ALLOW lets webhooks reach although they are not public. */
export class WebhookAllowList {
  readonly entries: readonly string[];
  readonly #hosts: readonly HostEntry[];
  readonly #blocks = new BlockList();
  #hasBlocks = false;

  /** Parses the comma-separated list; throws AllowListError naming the first bad entry. */
  constructor(text: string | readonly string[] | undefined) {
    const entries = (typeof text === 'string' ? text.split(',') : (text ?? []))
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '');
    const hosts: HostEntry[] = [];
    for (const entry of entries) {
      const slash = entry.indexOf('/');
      if (slash >= 0) {
        const address = stripBrackets(entry.slice(0, slash));
        const bitsText = entry.slice(slash + 1);
        const version = isIP(address);
        const bits = Number(bitsText);
        if (version === 0 || !/^\d+$/.test(bitsText) || bits > (version === 4 ? 32 : 128)) {
          throw new AllowListError(
            `RULEBOOK_WEBHOOK_ALLOW: "${entry}" is not a CIDR block such as 10.0.0.0/8 or fd00::/8`,
          );
        }
        this.#blocks.addSubnet(address, bits, version === 4 ? 'ipv4' : 'ipv6');
        this.#hasBlocks = true;
        continue;
      }
      let host = entry;
      let port: number | undefined;
      const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(entry);
      if (bracketed) {
        host = bracketed[1]!;
        if (bracketed[2] !== undefined) port = parsePort(bracketed[2], entry);
      } else if (isIP(entry) !== 6 && entry.includes(':')) {
        const colon = entry.lastIndexOf(':');
        host = entry.slice(0, colon);
        port = parsePort(entry.slice(colon + 1), entry);
      }
      host = normalHost(host);
      if (isIP(host) === 0 && !HOST_NAME.test(host)) {
        throw new AllowListError(
          `RULEBOOK_WEBHOOK_ALLOW: "${entry}" is not a host, host:port or CIDR block (entries are separated by commas)`,
        );
      }
      hosts.push({ host, port });
    }
    this.entries = Object.freeze(entries);
    this.#hosts = Object.freeze(hosts);
  }

  /** The URL's own host (name or IP literal, as written) is listed for this port. */
  allowsHost(hostname: string, port: number): boolean {
    const host = normalHost(hostname);
    return this.#hosts.some(
      (entry) => entry.host === host && (entry.port === undefined || entry.port === port),
    );
  }

  /** A resolved address is listed, as an IP entry for this port or inside a CIDR block. */
  allowsAddress(address: string, port: number): boolean {
    if (this.#hasBlocks && this.#blocks.check(address, familyOf(address))) return true;
    return this.#hosts.some(
      (entry) =>
        isIP(entry.host) !== 0 &&
        sameAddress(entry.host, address) &&
        (entry.port === undefined || entry.port === port),
    );
  }
}

function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const list = new BlockList();
  list.addAddress(a, familyOf(a));
  return list.check(b, familyOf(b));
}

/** A destination the guard will not send to; the delivery fails at once, since no retry can change it. */
export class DestinationRefused extends Error {
  override name = 'DestinationRefused';
}

export interface CheckedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

export type ResolveHost = (hostname: string) => Promise<CheckedAddress[]>;

const systemResolve: ResolveHost = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((entry) => ({
    address: entry.address,
    family: entry.family === 6 ? 6 : 4,
  }));

/**
 * Resolves a webhook URL's host and checks every address it has. Returns the addresses to connect
 * to (all checked); throws DestinationRefused for a refused destination, and lets resolution errors
 * (ENOTFOUND, EAI_AGAIN: possibly passing) through.
 */
export class DestinationGuard {
  constructor(
    readonly allow: WebhookAllowList,
    private readonly resolve: ResolveHost = systemResolve,
  ) {}

  async check(url: URL): Promise<CheckedAddress[]> {
    const hostname = stripBrackets(url.hostname);
    const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    const literal = isIP(hostname);
    const addresses: CheckedAddress[] =
      literal !== 0 ? [{ address: hostname, family: literal === 6 ? 6 : 4 }] : await this.resolve(hostname);
    if (addresses.length === 0) throw new DestinationRefused(`${hostname} resolves to no address`);
    if (this.allow.allowsHost(hostname, port)) return addresses;
    for (const { address } of addresses) {
      const reason = nonPublicReason(address);
      if (reason !== undefined && !this.allow.allowsAddress(address, port)) {
        const resolved = literal !== 0 ? '' : ` (${hostname} resolves to ${address})`;
        throw new DestinationRefused(
          `${address} is ${reason}${resolved}: webhooks go only to public addresses unless RULEBOOK_WEBHOOK_ALLOW lists the destination (for example ${allowExample(hostname, port)})`,
        );
      }
    }
    return addresses;
  }
}

function allowExample(hostname: string, port: number): string {
  return isIP(hostname) === 6 ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * A `lookup` for net/http that answers with the already checked addresses instead of asking DNS
 * again, so that the connection goes where the check looked.
 */
export function lookupPinnedTo(addresses: readonly CheckedAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) {
      callback(
        null,
        addresses.map((entry) => ({ ...entry })),
      );
    } else {
      const wanted = options.family === 6 || options.family === 4 ? options.family : undefined;
      const first =
        addresses.find((entry) => wanted === undefined || entry.family === wanted) ?? addresses[0]!;
      callback(null, first.address, first.family);
    }
  };
}
