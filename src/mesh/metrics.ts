import { Counter, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of one mesh peer, in a Registry of its own (never prom-client's global
 * one), so several meshes in one process do not mix. Labels are bounded: service and method
 * names, error codes (a fixed set), handshake patterns and roles — never keys, ids or tokens.
 *
 * `outcome` is `ok`, or the ThemisError code that ended the call, or `error` for anything else.
 */
export class MeshMetrics {
  readonly registry = new Registry();
  readonly calls: Counter<'service' | 'method' | 'outcome'>;
  readonly callDuration: Histogram<'service' | 'method' | 'outcome'>;
  readonly handledCalls: Counter<'service' | 'method' | 'outcome'>;
  readonly denials: Counter<'code'>;
  readonly handshakes: Counter<'pattern' | 'role'>;
  readonly dhtLookups: Counter;
  readonly rateLimited: Counter<'layer'>;

  constructor() {
    const registers = [this.registry];
    this.calls = new Counter({ name: 'themis_calls_total', help: 'Calls made by this peer, by outcome', labelNames: ['service', 'method', 'outcome'], registers });
    this.callDuration = new Histogram({
      name: 'themis_call_duration_seconds',
      help: 'Duration of calls made by this peer (retries included), by outcome',
      labelNames: ['service', 'method', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.handledCalls = new Counter({ name: 'themis_handled_calls_total', help: 'Calls served by this peer, by outcome', labelNames: ['service', 'method', 'outcome'], registers });
    this.denials = new Counter({ name: 'themis_denials_total', help: 'Incoming calls refused by this peer, by error code', labelNames: ['code'], registers });
    this.handshakes = new Counter({ name: 'themis_handshakes_total', help: 'Completed handshakes, by Noise pattern and role', labelNames: ['pattern', 'role'], registers });
    this.rateLimited = new Counter({ name: 'themis_rate_limited_total', help: 'Requests from peers refused by a per-peer rate limit, by layer (mesh calls and streams, dht RPCs)', labelNames: ['layer'], registers });
    this.dhtLookups = new Counter({ name: 'themis_dht_lookups_total', help: 'DHT value lookups made by the mesh layer (discovery, policy, revocations)', registers });
  }

  /** The Prometheus text exposition of every metric of this peer. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
