import type { Contact } from './contact.js';
import { compareDistance } from './distance.js';
import type { DhtRecord } from './record.js';

/** What one queried node answered: closer contacts and, for value lookups, records (all verified). */
export interface QueryAnswer {
  readonly contacts: readonly Contact[];
  readonly records?: readonly DhtRecord[];
}

export interface LookupInit {
  readonly target: Buffer;
  readonly seeds: readonly Contact[];
  /** Our own id: never queried. */
  readonly self: Buffer;
  readonly k: number;
  readonly alpha: number;
  /** Number of disjoint paths (S/Kademlia §4.4). */
  readonly disjoint: number;
  /** Queries one node; rejects when it fails or times out. */
  readonly query: (contact: Contact) => Promise<QueryAnswer>;
  /** Value lookups: stop every path once the records collected so far suffice. */
  readonly enough?: (records: readonly DhtRecord[]) => boolean;
  /** Node lookups for one node: stop every path once some node returned its signed contact. */
  readonly stopAtTarget?: boolean;
  /** Upper bound on queries of the whole lookup, against adversaries feeding endless contacts. */
  readonly maxQueries?: number;
}

export interface LookupResult {
  /** The k closest nodes that answered, over all paths, closest first. */
  readonly closest: Contact[];
  /** Every verified record returned, deduplicated by (key, publisher), highest seq kept. */
  readonly records: DhtRecord[];
  /** The target's own contact, when some node returned it. */
  readonly target: Contact | null;
  /** Hops to the first answer that held the target or a record (seeds are hop 1); null if none. */
  readonly hops: number | null;
  readonly queries: number;
  readonly failures: number;
}

type State = 'new' | 'pending' | 'done' | 'failed';
interface Candidate {
  readonly contact: Contact;
  readonly hop: number;
  state: State;
}

/**
 * Iterative Kademlia lookup over d disjoint paths (S/Kademlia §4.4): the seeds are dealt out to
 * the paths, each path runs its own α-parallel iterative search on its own shortlist, and a node
 * is used by at most one path — so one adversarial node can only ever spoil one path.
 */
export async function lookup(init: LookupInit): Promise<LookupResult> {
  const claimed = new Set<string>([init.self.toString('hex')]);
  const records = new Map<string, DhtRecord>();
  const answered: Contact[] = [];
  let queries = 0;
  let failures = 0;
  let target: Contact | null = null;
  let hops: number | null = null;
  let stopped = false;
  const maxQueries = init.maxQueries ?? 40 * init.disjoint * init.alpha;

  const claim = (contact: Contact): boolean => {
    const key = contact.nodeId.toString('hex');
    if (claimed.has(key)) return false;
    claimed.add(key);
    return true;
  };
  const noteHop = (hop: number): void => {
    if (hops === null || hop < hops) hops = hop;
  };

  const sortedSeeds = [...init.seeds].sort((a, b) => compareDistance(a.nodeId, b.nodeId, init.target));
  const paths: Candidate[][] = Array.from({ length: Math.max(1, init.disjoint) }, () => []);
  let next = 0;
  for (const seed of sortedSeeds) {
    if (seed.nodeId.equals(init.target)) {
      target ??= seed;
      hops = 0;
    }
    if (claim(seed)) paths[next++ % paths.length]!.push({ contact: seed, hop: 1, state: 'new' });
  }

  const runPath = (shortlist: Candidate[]): Promise<void> =>
    new Promise((resolve) => {
      let pending = 0;
      const pump = (): void => {
        if (!stopped) {
          // The k closest candidates not known to have failed: query the unqueried ones, α at a time.
          const live = shortlist.filter((c) => c.state !== 'failed').slice(0, init.k);
          for (const candidate of live) {
            if (pending >= init.alpha || queries >= maxQueries) break;
            if (candidate.state !== 'new') continue;
            candidate.state = 'pending';
            pending++;
            queries++;
            init.query(candidate.contact).then(
              (answer) => onAnswer(candidate, answer),
              () => {
                failures++;
                candidate.state = 'failed';
              },
            ).finally(() => {
              pending--;
              pump();
            });
          }
        }
        // A stopped lookup does not wait for queries still in flight (an adversary may never answer).
        if (pending === 0 || stopped) resolve();
      };
      const onAnswer = (from: Candidate, answer: QueryAnswer): void => {
        from.state = 'done';
        answered.push(from.contact);
        for (const record of answer.records ?? []) {
          const slot = `${record.key.toString('hex')}:${record.publisherId.toString('hex')}`;
          const existing = records.get(slot);
          if (existing === undefined || record.seq > existing.seq) records.set(slot, record);
          noteHop(from.hop);
        }
        for (const contact of answer.contacts) {
          if (contact.nodeId.equals(init.target)) {
            target ??= contact;
            noteHop(from.hop);
            if (init.stopAtTarget === true) stopped = true;
          }
          if (claim(contact)) shortlist.push({ contact, hop: from.hop + 1, state: 'new' });
        }
        shortlist.sort((a, b) => compareDistance(a.contact.nodeId, b.contact.nodeId, init.target));
        if (init.enough !== undefined && records.size > 0 && init.enough([...records.values()])) stopped = true;
      };
      shortlist.sort((a, b) => compareDistance(a.contact.nodeId, b.contact.nodeId, init.target));
      pump();
    });

  await Promise.all(paths.map(runPath));
  const closest = answered.sort((a, b) => compareDistance(a.nodeId, b.nodeId, init.target)).slice(0, init.k);
  const sortedRecords = [...records.values()].sort((a, b) => b.seq - a.seq);
  return { closest, records: sortedRecords, target, hops, queries, failures };
}
