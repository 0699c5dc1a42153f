/**
 * One error class for everything Themis raises on purpose. `code` is a stable string,
 * prefixed by the layer that raised it, so callers can `switch (err.code)`.
 * Messages say what went wrong and what to do; they never carry key material.
 * Programmer mistakes (wrong argument types, out-of-range options) stay TypeError/RangeError.
 */
export type ErrorCode =
  // core
  | 'ERR_DECODE_TRUNCATED'
  | 'ERR_DECODE_TRAILING'
  | 'ERR_DECODE_INVALID'
  | 'ERR_DECODE_TOO_LARGE'
  // identity
  | 'ERR_IDENTITY_BAD_SIGNATURE'
  | 'ERR_IDENTITY_PUZZLE'
  | 'ERR_IDENTITY_KEY_FILE'
  | 'ERR_IDENTITY_KEY_PERMISSIONS'
  | 'ERR_IDENTITY_INVALID'
  // handshake (protocol 1)
  | 'ERR_HANDSHAKE_DECRYPT'
  | 'ERR_HANDSHAKE_STATE'
  | 'ERR_HANDSHAKE_MESSAGE'
  | 'ERR_HANDSHAKE_PROOF'
  | 'ERR_HANDSHAKE_UNEXPECTED_PEER'
  | 'ERR_HANDSHAKE_TIMEOUT'
  | 'ERR_HANDSHAKE_CLOSED'
  | 'ERR_HANDSHAKE_NONCE_EXHAUSTED'
  // channel (protocol 2)
  | 'ERR_CHANNEL_DECRYPT'
  | 'ERR_CHANNEL_FRAME'
  | 'ERR_CHANNEL_FRAME_TOO_LARGE'
  | 'ERR_CHANNEL_NONCE_EXHAUSTED'
  | 'ERR_CHANNEL_STREAM_LIMIT'
  | 'ERR_CHANNEL_FLOW_CONTROL'
  | 'ERR_CHANNEL_PENDING_LIMIT'
  | 'ERR_CHANNEL_PROTOCOL'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_CHANNEL_GOAWAY'
  | 'ERR_CHANNEL_TIMEOUT'
  | 'ERR_CHANNEL_CANCELLED'
  | 'ERR_CHANNEL_RESET'
  | 'ERR_CHANNEL_NO_HANDLER'
  | 'ERR_CHANNEL_HANDLER'
  | 'ERR_CHANNEL_MESSAGE_TOO_LARGE'
  // dht
  | 'ERR_DHT_RECORD_INVALID'
  | 'ERR_DHT_RECORD_EXPIRED'
  | 'ERR_DHT_RECORD_STALE'
  | 'ERR_DHT_CONTACT_INVALID'
  | 'ERR_DHT_QUOTA'
  | 'ERR_DHT_TOO_LARGE'
  | 'ERR_DHT_NOT_FOUND'
  | 'ERR_DHT_LOOKUP_FAILED'
  | 'ERR_DHT_PROTOCOL'
  | 'ERR_DHT_STORAGE'
  | 'ERR_DHT_CLOSED'
  | 'ERR_DHT_RATE_LIMITED'
  // transport
  | 'ERR_TRANSPORT_ADDRESS'
  | 'ERR_TRANSPORT_CONNECT'
  | 'ERR_TRANSPORT_LIMIT'
  | 'ERR_TRANSPORT_CLOSED'
  // mesh: trust-domain policy and endorsements
  | 'ERR_MESH_POLICY_INVALID'
  | 'ERR_MESH_POLICY_OWNER'
  | 'ERR_MESH_POLICY_ROLLBACK'
  | 'ERR_MESH_NO_POLICY'
  | 'ERR_MESH_ENDORSEMENT_INVALID'
  | 'ERR_MESH_ENDORSEMENT_EXPIRED'
  // mesh: the callee's decision on a remote peer and its calls (issue 4)
  | 'ERR_MESH_UNENDORSED'
  | 'ERR_MESH_WRONG_DOMAIN'
  | 'ERR_MESH_UNTRUSTED_HOST'
  | 'ERR_MESH_REVOKED'
  | 'ERR_MESH_WRONG_INSTANCE'
  | 'ERR_MESH_UNKNOWN_SERVICE'
  | 'ERR_MESH_DIGEST_NOT_ALLOWED'
  | 'ERR_MESH_FORBIDDEN'
  // mesh: principal tokens, rotation and revocation
  | 'ERR_MESH_TOKEN_INVALID'
  | 'ERR_MESH_TOKEN_EXPIRED'
  | 'ERR_MESH_TOKEN_AUDIENCE'
  | 'ERR_MESH_TOKEN_REPLAYED'
  | 'ERR_MESH_TOKEN_ISSUER'
  | 'ERR_MESH_REPLAY_CACHE_FULL'
  | 'ERR_MESH_ROTATION_INVALID'
  | 'ERR_MESH_REVOCATION_INVALID'
  | 'ERR_MESH_REVOCATION_UNAUTHORIZED'
  // mesh: calls (provide / discover / call)
  | 'ERR_MESH_DEADLINE'
  | 'ERR_MESH_NO_INSTANCES'
  | 'ERR_MESH_CALL_FAILED'
  | 'ERR_MESH_CALL_INVALID'
  | 'ERR_MESH_CLOSED'
  // attest: attestors (code digest, TPM 2.0) and the verifier
  | 'ERR_ATTEST_TPM'
  | 'ERR_ATTEST_EVIDENCE_INVALID'
  | 'ERR_ATTEST_SIGNATURE'
  | 'ERR_ATTEST_NONCE'
  | 'ERR_ATTEST_LOG_MISMATCH'
  | 'ERR_ATTEST_UNTRUSTED_KEY'
  | 'ERR_ATTEST_MEASUREMENT_REFUSED'
  | 'ERR_ATTEST_NOT_MEASURED'
  | 'ERR_ATTEST_MISSING'
  | 'ERR_ATTEST_UNAVAILABLE'
  // runtime (issue 5): manifest, key-value store, instances, gateway
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_RUNTIME_KV'
  | 'ERR_RUNTIME_MODULE'
  | 'ERR_RUNTIME_COLD_START'
  | 'ERR_RUNTIME_INSTANCE_GONE'
  | 'ERR_RUNTIME_TIMEOUT'
  | 'ERR_RUNTIME_CLOSED'
  | 'ERR_MESH_RATE_LIMITED';

export class ThemisError extends Error {
  readonly code: ErrorCode;
  /** True when the message may be shown to a remote peer (never for crypto failures). */
  readonly expose: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; expose?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ThemisError';
    this.code = code;
    this.expose = options?.expose ?? false;
  }
}

export function isThemisError(err: unknown, code?: ErrorCode): err is ThemisError {
  return err instanceof ThemisError && (code === undefined || err.code === code);
}
