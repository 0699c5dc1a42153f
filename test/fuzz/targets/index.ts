// Every fuzz target, in the order of the layers a peer's bytes pass through.
import type { FuzzTarget } from '../harness.js';
import { channelMemory, channelTcp, framer, muxFrames } from './channel.js';
import { dhtMessages, dhtRpc, records } from './dht.js';
import { handshakeInitiator, handshakeMemory, handshakeResponder, handshakeTcp, proof } from './handshake.js';
import { callCodec, endorsements, meshCall, policies, revocation, rotation, streamHeader, tokens } from './mesh.js';

export const TARGETS: readonly FuzzTarget<any>[] = [
  proof,
  handshakeResponder,
  handshakeInitiator,
  handshakeMemory,
  handshakeTcp,
  framer,
  muxFrames,
  channelMemory,
  channelTcp,
  dhtMessages,
  records,
  dhtRpc,
  endorsements,
  policies,
  tokens,
  rotation,
  revocation,
  callCodec,
  streamHeader,
  meshCall,
];
