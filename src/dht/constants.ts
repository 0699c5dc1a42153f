/** Kademlia / S/Kademlia parameters, under the papers' names. Times in milliseconds. */
export const second = 1000;
export const minute = 60 * second;
export const hour = 60 * minute;

/** Bits in a NodeId / record key. */
export const ID_BITS = 256;
/** Bucket size and replication factor (Kademlia's k). */
export const K = 20;
/** Parallel queries per lookup path (Kademlia's α). */
export const ALPHA = 3;
/** Disjoint lookup paths (S/Kademlia's d; they recommend 4–8). */
export const DISJOINT_PATHS = 4;
