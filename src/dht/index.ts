export { ALPHA, DISJOINT_PATHS, ID_BITS, K, hour, minute, second } from './constants.js';
export { CONTACT_TAG, CONTACT_TTL, createContactRecord, verifyContactRecord, type Contact } from './contact.js';
export { commonPrefixLength, compareDistance, sortByDistance, xorDistance } from './distance.js';
export { lookup, type LookupInit, type LookupResult, type QueryAnswer } from './lookup.js';
export { RPC, StoreStatus } from './messages.js';
export {
  DEFAULT_RECORD_LIMITS,
  RECORD_TAG,
  RecordType,
  createRecord,
  decodeProviderValue,
  encodeProviderValue,
  immutableKey,
  mutableKey,
  policyKey,
  providerKey,
  revocationKey,
  verifyRecord,
  type DhtRecord,
  type RecordInit,
  type RecordLimits,
} from './record.js';
export { MemoryRecordStore, openLmdbRecordStore, type RecordStore, type RecordStoreLimits } from './record-store.js';
export { RoutingTable, type AddResult, type RoutingTableOptions, type TableEntry } from './routing-table.js';
export { DhtNode, createDhtNode, DEFAULT_DHT_OPTIONS, type AddressDialer, type DhtNodeInit, type DhtOptions, type LookupOverrides, type NodeInspection, type StoreResult } from './node.js';
