import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of one running app, in a Registry of its own (as mesh/metrics.ts). Labels
 * are bounded: service names and routes from the manifest, HTTP status codes, dispose reasons.
 */
export class RuntimeMetrics {
  readonly registry = new Registry();
  readonly coldStarts: Histogram<'service'>;
  readonly instances: Gauge<'service'>;
  readonly replaced: Counter<'service' | 'reason'>;
  readonly requests: Counter<'route' | 'status'>;
  readonly requestDuration: Histogram<'route'>;

  constructor() {
    const registers = [this.registry];
    this.coldStarts = new Histogram({
      name: 'themis_runtime_cold_start_seconds',
      help: 'Cold starts of function instances (identity, measurement, endorsement, isolate, join, provider record)',
      labelNames: ['service'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.instances = new Gauge({ name: 'themis_runtime_instances', help: 'Ready function instances', labelNames: ['service'], registers });
    this.replaced = new Counter({ name: 'themis_runtime_instances_replaced_total', help: 'Instances replaced after their isolate died, by reason', labelNames: ['service', 'reason'], registers });
    this.requests = new Counter({ name: 'themis_gateway_requests_total', help: 'Gateway requests by route and status', labelNames: ['route', 'status'], registers });
    this.requestDuration = new Histogram({
      name: 'themis_gateway_request_duration_seconds',
      help: 'Gateway request duration by route',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
