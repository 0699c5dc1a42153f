import { isIPv4, isIPv6 } from 'node:net';

/** The network prefix an address is grouped under for diversity limits. */
export interface Subnet {
  /** `a.b.c.0/24` for IPv4, `h0:h1:h2::/48` for IPv6 (lowercase hex, no leading zeros). */
  readonly prefix: string;
  /** 127.0.0.0/8 or ::1. */
  readonly loopback: boolean;
}

/**
 * The IPv4 /24 or IPv6 /48 an IP address belongs to, or null when `ip` is not an IP literal.
 * IPv6 may carry a zone (`fe80::1%eth0`) or brackets; IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a
 * dual-stack socket reports for IPv4 peers) is grouped as the IPv4 address it maps.
 */
export function subnetOf(ip: string): Subnet | null {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  if (isIPv4(bare)) return ipv4Subnet(bare.split('.').map(Number));
  if (!isIPv6(bare)) return null;
  const g = ipv6Groups(bare);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return ipv4Subnet([g[6]! >> 8, g[6]! & 0xff, g[7]! >> 8, g[7]! & 0xff]);
  return {
    prefix: `${g[0]!.toString(16)}:${g[1]!.toString(16)}:${g[2]!.toString(16)}::/48`,
    loopback: g.slice(0, 7).every((x) => x === 0) && g[7] === 1,
  };
}

function ipv4Subnet(octets: number[]): Subnet {
  return { prefix: `${octets[0]}.${octets[1]}.${octets[2]}.0/24`, loopback: octets[0] === 127 };
}

/** The eight 16-bit groups of an address that `isIPv6` accepted. */
function ipv6Groups(text: string): number[] {
  let head = text.split('%', 1)[0]!;
  if (head.includes('.')) {
    // An embedded dotted quad stands for the last two groups.
    const cut = head.lastIndexOf(':') + 1;
    const q = head.slice(cut).split('.').map(Number);
    head = `${head.slice(0, cut)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((h) => parseInt(h, 16)) : []);
  const [left, right] = head.split('::');
  const l = parse(left);
  if (right === undefined) return l;
  const r = parse(right);
  return [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
}
