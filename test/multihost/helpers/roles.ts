// How the multi-host test configures each kind of peer: only through the THEMIS_* environment
// variables the CLI reads (src/cli/options.ts and the commands), the same keys the Kubernetes
// manifests in deploy/ set. test/unit/deploy/manifests.test.ts compares the two.

/** The network every peer must agree on: the puzzle difficulties (the defaults, stated). */
export const NETWORK_ENV = { THEMIS_C1: '4', THEMIS_C2: '8' } as const;

/** A DHT anchor (`themis node`): the StatefulSet in deploy/kubernetes/anchors.yaml. */
export function anchorEnv(p: { listen: string; bootstrap: readonly string[]; data: string; key: string }): Record<string, string> {
  return { ...NETWORK_ENV, THEMIS_LISTEN: p.listen, THEMIS_BOOTSTRAP: p.bootstrap.join(','), THEMIS_DATA: p.data, THEMIS_KEY: p.key };
}

/** An instance providing a service (`themis provide`): the Deployment in deploy/kubernetes/functions.yaml. */
export function functionHostEnv(p: { listen: string; via: string; key: string; endorsement: string; owner: string }): Record<string, string> {
  return { ...NETWORK_ENV, THEMIS_LISTEN: p.listen, THEMIS_VIA: p.via, THEMIS_KEY: p.key, THEMIS_ENDORSEMENT: p.endorsement, THEMIS_OWNER: p.owner };
}

/** A caller (`themis call`, test/multihost/fixtures/caller.mjs): a function host that does not listen. */
export function callerEnv(p: { via: string; key: string; endorsement: string; owner: string }): Record<string, string> {
  return { ...NETWORK_ENV, THEMIS_VIA: p.via, THEMIS_KEY: p.key, THEMIS_ENDORSEMENT: p.endorsement, THEMIS_OWNER: p.owner };
}
