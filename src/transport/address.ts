import { isIP } from 'node:net';
import { ThemisError } from '../core/errors.js';

export interface TcpAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `tcp://host:port` (IPv6 hosts in brackets: `tcp://[::1]:4000`). */
export function parseTcpAddress(text: string): TcpAddress {
  const match = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || port > 65535) {
    throw new ThemisError('ERR_TRANSPORT_ADDRESS', `"${text}" is not a Themis address; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000`);
  }
  const host = match[1]!.startsWith('[') ? match[1]!.slice(1, -1) : match[1]!;
  if (match[1]!.startsWith('[') && isIP(host) !== 6) throw new ThemisError('ERR_TRANSPORT_ADDRESS', `"${text}" has an invalid IPv6 address`);
  return { host, port };
}

export function formatTcpAddress(address: TcpAddress): string {
  return isIP(address.host) === 6 ? `tcp://[${address.host}]:${address.port}` : `tcp://${address.host}:${address.port}`;
}
