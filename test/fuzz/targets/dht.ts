// The DHT (docs/dht.md): RPC message decoders, signed records and contact records, and a live
// DhtNode answering a keyed peer's RPCs over an in-memory connection.
import { createContactRecord, createRecord, encodeProviderValue, RecordType, RPC, verifyContactRecord, verifyRecord, decodeProviderValue, immutableKey, mutableKey, policyKey, providerKey, createDhtNode, type DhtNode } from '../../../src/dht/index.js';
import * as msg from '../../../src/dht/messages.js';
import { openEnvelope } from '../../../src/identity/index.js';
import { encodePolicy } from '../../../src/mesh/index.js';
import { createRevocation } from '../../../src/mesh/revocation.js';
import { connectInMemory } from '../../../src/testing/index.js';
import { createPeer, type Connection, type Peer } from '../../../src/transport/index.js';
import { ids, joinProblems, network, policy, selector, tagged, untypedErrorLog } from '../fixtures.js';
import { defineTarget } from '../harness.js';

const NOW = Date.now();
const ADDRESSES = ['tcp://127.0.0.1:4000', 'tcp://[2001:db8::7]:4001'];

/** One valid record of every type (docs/dht.md §3) and contact records. */
function artifacts() {
  const contact = createContactRecord(ids.instance, { addresses: ADDRESSES, now: NOW });
  const clientContact = createContactRecord(ids.next, { addresses: [], client: true, now: NOW });
  const value = Buffer.from('a value');
  const salt = Buffer.from('greeting');
  const records = [
    createRecord(ids.instance, { type: RecordType.Contact, key: ids.instance.nodeId, value: contact, seq: 1, now: NOW }),
    createRecord(ids.instance, { type: RecordType.Provider, key: providerKey('users'), value: encodeProviderValue('users', contact), seq: 2, now: NOW }),
    createRecord(ids.instance, { type: RecordType.Mutable, key: mutableKey(ids.instance.publicKey, salt), salt, value, seq: 3, now: NOW }),
    createRecord(ids.instance, { type: RecordType.Immutable, key: immutableKey(value), value, now: NOW }),
    createRecord(ids.owner, { type: RecordType.Policy, key: policyKey(ids.owner.publicKey), value: encodePolicy(policy), seq: policy.seq, now: NOW }),
    createRevocation(ids.host, ids.instance.publicKey, 1, NOW),
  ];
  return { contact, clientContact, records, providerValue: encodeProviderValue('users', contact) };
}

/** The nine decoders of docs/dht.md §4, selected by the input's first byte. */
const decoders = [
  msg.decodePingRequest,
  msg.decodePingResponse,
  msg.decodeFindNodeRequest,
  msg.decodeContactsResponse,
  msg.decodeFindValueRequest,
  msg.decodeFindValueResponse,
  msg.decodeStoreRequest,
  msg.decodeStoreResponse,
] as const;

function rpcSeeds(): Buffer[] {
  const { contact, clientContact, records } = artifacts();
  const target = ids.host.nodeId;
  return [
    tagged(0, msg.encodePingRequest(contact)),
    tagged(1, msg.encodePingResponse(contact)),
    tagged(2, msg.encodeFindNodeRequest(contact, target)),
    tagged(3, msg.encodeContactsResponse([contact, clientContact])),
    tagged(4, msg.encodeFindValueRequest(Buffer.alloc(0), target)),
    tagged(5, msg.encodeFindValueResponse(records.slice(0, 3), [contact])),
    tagged(6, msg.encodeStoreRequest(contact, records[2]!)),
    tagged(7, msg.encodeStoreResponse(msg.StoreStatus.Quota)),
  ];
}

export const dhtMessages = defineTarget({
  name: 'dht-messages',
  description: 'the DHT RPC decoders (ping, find_node, find_value, store: requests and responses)',
  setup: () => null,
  seeds: () => rpcSeeds(),
  run(_, input) {
    decoders[selector(input) % decoders.length]!(input.subarray(1));
  },
});

export const records = defineTarget({
  name: 'records',
  description: 'signed records of every type (verifyRecord: envelope, key rule, sizes, expiry), contact records, provider values, envelopes',
  setup: () => artifacts(),
  seeds: ({ contact, records: all, providerValue }) => [...all.map((r) => tagged(0, r)), tagged(1, contact), tagged(2, providerValue), tagged(3, all[2]!)],
  run(_, input) {
    const payload = input.subarray(1);
    switch (selector(input) % 4) {
      case 0:
        verifyRecord(payload, network, { now: NOW });
        return;
      case 1:
        verifyContactRecord(payload, network, NOW);
        return;
      case 2:
        verifyContactRecord(decodeProviderValue(payload).contactRecord, network, NOW);
        return;
      default:
        openEnvelope(payload, 'themis/record/v1');
    }
  },
});

interface RpcContext {
  readonly node: DhtNode;
  readonly attacker: Peer;
  readonly conn: Connection;
  readonly problems: string[];
}

const RPC_NAMES = [RPC.Ping, RPC.FindNode, RPC.FindValue, RPC.Store, RPC.Inspect] as const;

export const dhtRpc = defineTarget({
  name: 'dht-rpc',
  description: 'a live DhtNode (in-memory record store) answering dht/ping, find_node, find_value, store and inspect from a keyed peer over an in-memory connection',
  async setup(): Promise<RpcContext> {
    const { logger, problems } = untypedErrorLog();
    const node = await createDhtNode({ network, maintenance: false, logger });
    const attacker = await createPeer({ network, identity: ids.instance });
    const { dialed } = await connectInMemory(attacker, node.peer);
    return { node, attacker, conn: dialed, problems };
  },
  seeds: () => rpcSeeds().filter((seed) => [0, 2, 4, 6].includes(seed[0]!)).map((seed) => tagged(seed[0]! / 2, seed.subarray(1))),
  async run({ conn }, input) {
    await conn.request(RPC_NAMES[selector(input) % RPC_NAMES.length]!, input.subarray(1), { timeoutMs: 2000 });
  },
  leaks: ({ conn }) => (conn.closed ? 'the node closed the connection' : null),
  async problems({ node, conn, problems }) {
    // The node must still serve an honest request after the run.
    const answer = await conn.request(RPC.Ping, msg.encodePingRequest(Buffer.alloc(0)), { timeoutMs: 2000 }).catch((err: Error) => err);
    if (answer instanceof Error) problems.push(`the node no longer answers a ping: ${answer.message}`);
    const held = node.peer.connections.size;
    if (held > 1) problems.push(`the node holds ${held} connections`);
    return joinProblems(problems);
  },
  async teardown({ node, attacker }) {
    await attacker.close();
    await node.leave();
  },
});
