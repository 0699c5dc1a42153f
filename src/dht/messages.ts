import { Reader, Writer } from '../core/codec.js';
import { ThemisError } from '../core/errors.js';

/**
 * DHT RPCs (docs/dht.md §4) travel as channel requests under these names. Every body starts
 * with a version byte; requests then carry the sender's signed contact record (empty for
 * clients, which never enter routing tables).
 */
export const RPC = Object.freeze({ Ping: 'dht/ping', FindNode: 'dht/find_node', FindValue: 'dht/find_value', Store: 'dht/store', Inspect: 'dht/inspect' } as const);
const VERSION = 1;
/** At most this many contacts or records in one answer. */
export const MAX_CONTACTS = 32;
export const MAX_RECORDS = 64;
const MAX_CONTACT_RECORD = 1024;
const MAX_RECORD = 128 * 1024;

export const StoreStatus = Object.freeze({ Stored: 0, Same: 1, Stale: 2, Quota: 3, Invalid: 4, TooLarge: 5, Expired: 6 } as const);
export type StoreStatus = (typeof StoreStatus)[keyof typeof StoreStatus];

function protocol(message: string, cause?: unknown): ThemisError {
  return new ThemisError('ERR_DHT_PROTOCOL', message, cause === undefined ? undefined : { cause });
}

/** Decodes with a Reader and turns every decoding failure into ERR_DHT_PROTOCOL. */
function decode<T>(bytes: Uint8Array, what: string, read: (r: Reader) => T): T {
  try {
    const r = new Reader(bytes, what);
    const version = r.u8();
    if (version !== VERSION) throw protocol(`${what}: version ${version} is not supported`);
    const out = read(r);
    r.end();
    return out;
  } catch (err) {
    if (err instanceof ThemisError && err.code === 'ERR_DHT_PROTOCOL') throw err;
    throw protocol(`${what}: ${(err as Error).message}`, err);
  }
}

function readList(r: Reader, max: number, read: () => Buffer): Buffer[] {
  const n = r.u8();
  if (n > max) throw protocol(`list of ${n} entries; the limit is ${max}`);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) out.push(read());
  return out;
}

function writeContacts(w: Writer, contacts: readonly Uint8Array[]): Writer {
  w.u8(Math.min(contacts.length, MAX_CONTACTS));
  for (const c of contacts.slice(0, MAX_CONTACTS)) w.vec16(c);
  return w;
}

const readContacts = (r: Reader): Buffer[] => readList(r, MAX_CONTACTS, () => r.vec16(MAX_CONTACT_RECORD));

export interface RpcRequest<T> {
  /** Signed contact record of the sender, or empty for a client. */
  readonly sender: Buffer;
  readonly body: T;
}

const header = (sender: Uint8Array, size = 64): Writer => new Writer(sender.length + size).u8(VERSION).vec16(sender);

// ping
export const encodePingRequest = (sender: Uint8Array): Buffer => header(sender).finish();
export const decodePingRequest = (bytes: Uint8Array): RpcRequest<null> =>
  decode(bytes, 'ping request', (r) => ({ sender: r.vec16(MAX_CONTACT_RECORD), body: null }));
export const encodePingResponse = (contact: Uint8Array): Buffer => new Writer(contact.length + 4).u8(VERSION).vec16(contact).finish();
export const decodePingResponse = (bytes: Uint8Array): Buffer => decode(bytes, 'ping response', (r) => r.vec16(MAX_CONTACT_RECORD));

// find_node
export const encodeFindNodeRequest = (sender: Uint8Array, target: Uint8Array): Buffer => header(sender).fixed(target, 32).finish();
export const decodeFindNodeRequest = (bytes: Uint8Array): RpcRequest<Buffer> =>
  decode(bytes, 'find_node request', (r) => ({ sender: r.vec16(MAX_CONTACT_RECORD), body: r.fixed(32) }));
export const encodeContactsResponse = (contacts: readonly Uint8Array[]): Buffer => writeContacts(new Writer(1024).u8(VERSION), contacts).finish();
export const decodeContactsResponse = (bytes: Uint8Array): Buffer[] => decode(bytes, 'find_node response', readContacts);

// find_value
export const encodeFindValueRequest = (sender: Uint8Array, key: Uint8Array): Buffer => header(sender).fixed(key, 32).finish();
export const decodeFindValueRequest = decodeFindNodeRequest;
export interface FindValueResponse {
  readonly records: Buffer[];
  readonly contacts: Buffer[];
}
export function encodeFindValueResponse(records: readonly Uint8Array[], contacts: readonly Uint8Array[]): Buffer {
  const w = new Writer(2048).u8(VERSION).u8(Math.min(records.length, MAX_RECORDS));
  for (const record of records.slice(0, MAX_RECORDS)) w.vec32(record);
  return writeContacts(w, contacts).finish();
}
export const decodeFindValueResponse = (bytes: Uint8Array): FindValueResponse =>
  decode(bytes, 'find_value response', (r) => ({ records: readList(r, MAX_RECORDS, () => r.vec32(MAX_RECORD)), contacts: readContacts(r) }));

// store
export const encodeStoreRequest = (sender: Uint8Array, record: Uint8Array): Buffer => header(sender, record.length + 8).vec32(record).finish();
export const decodeStoreRequest = (bytes: Uint8Array): RpcRequest<Buffer> =>
  decode(bytes, 'store request', (r) => ({ sender: r.vec16(MAX_CONTACT_RECORD), body: r.vec32(MAX_RECORD) }));
export const encodeStoreResponse = (status: StoreStatus): Buffer => new Writer(2).u8(VERSION).u8(status).finish();
export function decodeStoreResponse(bytes: Uint8Array): StoreStatus {
  const status = decode(bytes, 'store response', (r) => r.u8());
  if (!(Object.values(StoreStatus) as number[]).includes(status)) throw protocol(`store response status ${status} is unknown`);
  return status as StoreStatus;
}
