import type { CipherName } from './cipher.js';

/** A DH token: the first letter names the initiator's key, the second the responder's (Noise §2.2, §5.3). */
export type DhToken = 'ee' | 'es' | 'se' | 'ss';
/** Noise §7: the tokens of a message pattern; "psk" is added by the psk modifiers (§9.2). */
export type Token = 'e' | 's' | DhToken | 'psk';
export type MessagePattern = readonly Token[];
/** The interactive patterns of Noise §7.3 that this implementation supports. */
export type PatternName = 'NN' | 'NK' | 'XK' | 'XX' | 'KK' | 'IK' | 'IX';

/**
 * Noise §7: a handshake pattern as data. The supported patterns pre-share static keys only,
 * so a pre-message is either empty or `["s"]`.
 */
export interface HandshakePattern {
  readonly initiatorPreMessage: readonly 's'[];
  readonly responderPreMessage: readonly 's'[];
  /** Message patterns in order; even indexes are sent by the initiator (§7). */
  readonly messages: readonly MessagePattern[];
}

/** Noise §7.3, interactive handshake patterns. */
export const PATTERNS: Readonly<Record<PatternName, HandshakePattern>> = {
  NN: { initiatorPreMessage: [], responderPreMessage: [], messages: [['e'], ['e', 'ee']] },
  NK: { initiatorPreMessage: [], responderPreMessage: ['s'], messages: [['e', 'es'], ['e', 'ee']] },
  XK: { initiatorPreMessage: [], responderPreMessage: ['s'], messages: [['e', 'es'], ['e', 'ee'], ['s', 'se']] },
  XX: { initiatorPreMessage: [], responderPreMessage: [], messages: [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']] },
  KK: { initiatorPreMessage: ['s'], responderPreMessage: ['s'], messages: [['e', 'es', 'ss'], ['e', 'ee', 'se']] },
  IK: { initiatorPreMessage: [], responderPreMessage: ['s'], messages: [['e', 'es', 's', 'ss'], ['e', 'ee', 'se']] },
  IX: { initiatorPreMessage: [], responderPreMessage: [], messages: [['e', 's'], ['e', 'ee', 'se', 's', 'es']] },
};

/** A parsed Noise protocol name (Noise §8). */
export interface NoiseProtocol {
  /** The full name, e.g. `Noise_XXpsk3_25519_ChaChaPoly_SHA256`; it seeds the handshake hash (§5.2). */
  readonly name: string;
  readonly pattern: PatternName;
  /** Pattern modifiers in name order, e.g. `['psk3']`; only psk modifiers are supported. */
  readonly modifiers: readonly string[];
  readonly cipher: CipherName;
  /** The base pattern with the modifiers applied. */
  readonly handshake: HandshakePattern;
}

const NAME = /^Noise_([A-Z]+)([a-z0-9+]*)_([A-Za-z0-9/+]+)_([A-Za-z0-9/+]+)_([A-Za-z0-9/+]+)$/;
const PSK_MODIFIER = /^psk([0-9])$/;
const PSK: readonly Token[] = ['psk'];

function unsupported(name: string, why: string): RangeError {
  return new RangeError(`unsupported Noise protocol ${JSON.stringify(name)}: ${why}`);
}

function isPatternName(name: string): name is PatternName {
  return Object.hasOwn(PATTERNS, name);
}

/**
 * Noise §9.4: `psk0` puts a "psk" token at the start of the first message, `pskN` at the end
 * of the N-th. Every supported pattern opens each party's first message with "e", so any
 * placement satisfies the §9.3 validity rule.
 */
function withPskTokens(base: HandshakePattern, positions: readonly number[]): HandshakePattern {
  return {
    ...base,
    messages: base.messages.map((tokens, i) => [
      ...(i === 0 && positions.includes(0) ? PSK : []),
      ...tokens,
      ...(positions.includes(i + 1) ? PSK : []),
    ]),
  };
}

/**
 * Parses a Noise protocol name (§8) for the 25519 DH functions, the ChaChaPoly or AESGCM
 * cipher, SHA256, one of the patterns in PATTERNS and optional psk modifiers (§9.4, in
 * increasing order as §8.1 asks). Anything else throws a RangeError naming what is unsupported.
 * @example parseProtocolName('Noise_IKpsk2_25519_ChaChaPoly_SHA256').handshake.messages[1] // ['e', 'ee', 'se', 'psk']
 */
export function parseProtocolName(name: string): NoiseProtocol {
  const match = NAME.exec(name);
  if (match === null) throw unsupported(name, 'expected Noise_<pattern>_<dh>_<cipher>_<hash> (Noise §8)');
  const [, pattern = '', modifierSection = '', dh, cipher, hashName] = match;
  if (dh !== '25519') throw unsupported(name, `DH functions ${dh} (only 25519)`);
  if (cipher !== 'ChaChaPoly' && cipher !== 'AESGCM') throw unsupported(name, `cipher ${cipher} (only ChaChaPoly or AESGCM)`);
  if (hashName !== 'SHA256') throw unsupported(name, `hash ${hashName} (only SHA256)`);
  if (!isPatternName(pattern)) throw unsupported(name, `pattern ${pattern} (supported: ${Object.keys(PATTERNS).join(', ')})`);
  const base = PATTERNS[pattern];
  const modifiers = modifierSection === '' ? [] : modifierSection.split('+');
  const positions: number[] = [];
  for (const modifier of modifiers) {
    const psk = PSK_MODIFIER.exec(modifier);
    if (psk === null) throw unsupported(name, `pattern modifier ${JSON.stringify(modifier)} (only psk0…psk${base.messages.length})`);
    const position = Number(psk[1]);
    if (position > base.messages.length) throw unsupported(name, `psk${position} on a ${base.messages.length}-message pattern`);
    if (position <= (positions.at(-1) ?? -1)) throw unsupported(name, 'psk modifiers must be distinct and in increasing order');
    positions.push(position);
  }
  return {
    name,
    pattern,
    modifiers,
    cipher,
    handshake: withPskTokens(base, positions),
  };
}
