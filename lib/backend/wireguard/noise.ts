/**
 * WireGuard's handshake (whitepaper §5.4): Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, the four
 * message layouts, MAC1/MAC2 and TAI64N timestamps. Pure functions over byte arrays: no
 * sockets, no clocks (the caller passes the time), no peer tables.
 */

import { aeadOpen, aeadSeal, x25519, x25519Base } from "../../../ffi/crypto.ts";
import { blake2s, kdf, mac16 } from "./blake2s.ts";
import { generatePrivateKey } from "./keys.ts";

const te = new TextEncoder();
/** The Noise protocol name, hashed into the first chaining key. */
export const CONSTRUCTION = te.encode("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s");
/** WireGuard's prologue. */
export const IDENTIFIER = te.encode("WireGuard v1 zx2c4 Jason@zx2c4.com");
/** Prefix of the MAC1 key hash. */
export const LABEL_MAC1 = te.encode("mac1----");
/** Prefix of the cookie-encryption key hash. */
export const LABEL_COOKIE = te.encode("cookie--");

/** Message types (the first byte; the next three are zero). */
export const MSG_INITIATION = 1;
/** Handshake response. */
export const MSG_RESPONSE = 2;
/** Cookie reply. */
export const MSG_COOKIE = 3;
/** Transport data. */
export const MSG_TRANSPORT = 4;

/** Message sizes and field offsets. */
export const INITIATION_SIZE = 148;
/** Handshake response size. */
export const RESPONSE_SIZE = 92;
/** Cookie reply size. */
export const COOKIE_SIZE = 64;
/** Transport header (type, receiver, counter) before the ciphertext. */
export const TRANSPORT_HEADER = 16;
/** The smallest transport message: header and an empty plaintext's tag (a keepalive). */
export const TRANSPORT_MIN = 32;

const INIT_SENDER = 4, INIT_EPHEMERAL = 8, INIT_STATIC = 40, INIT_TIMESTAMP = 88;
/** Where MAC1 starts in an initiation; MAC2 follows it 16 bytes later. */
export const INIT_MAC1 = 116;
const RESP_SENDER = 4, RESP_RECEIVER = 8, RESP_EPHEMERAL = 12, RESP_EMPTY = 44;
/** Where MAC1 starts in a response. */
export const RESP_MAC1 = 60;

/** The chaining key and hash every handshake starts from. */
export const INITIAL_CHAIN_KEY = blake2s(CONSTRUCTION);
/** HASH(INITIAL_CHAIN_KEY ‖ IDENTIFIER). */
export const INITIAL_HASH = blake2s(INITIAL_CHAIN_KEY, IDENTIFIER);

const ZERO_NONCE = new Uint8Array(12);
const EMPTY = new Uint8Array(0);

/** Our static identity, with the hashes derived from it. */
export interface Identity {
  /** The private key. */
  readonly priv: Uint8Array;
  /** The public key. */
  readonly pub: Uint8Array;
  /** HASH(LABEL_MAC1 ‖ pub): the key of MAC1 on messages sent to us. */
  readonly mac1Key: Uint8Array;
  /** HASH(LABEL_COOKIE ‖ pub): the key of cookie replies we send. */
  readonly cookieKey: Uint8Array;
}

/** Derives an {@link Identity} from a private key. */
export function identity(priv: Uint8Array): Identity {
  const pub = x25519Base(priv);
  return {
    priv,
    pub,
    mac1Key: blake2s(LABEL_MAC1, pub),
    cookieKey: blake2s(LABEL_COOKIE, pub),
  };
}

/** What we precompute about a peer. */
export interface PeerKeys {
  /** The peer's public key. */
  readonly pub: Uint8Array;
  /** The preshared key (32 zero bytes when none). */
  readonly psk: Uint8Array;
  /** DH(our private key, the peer's public key), or null when it is a low-order point. */
  readonly staticShared: Uint8Array | null;
  /** HASH(LABEL_MAC1 ‖ peer pub): the key of MAC1 on messages we send to the peer. */
  readonly mac1Key: Uint8Array;
  /** HASH(LABEL_COOKIE ‖ peer pub): decrypts cookie replies from the peer. */
  readonly cookieKey: Uint8Array;
}

/** Derives a peer's {@link PeerKeys}. */
export function peerKeys(id: Identity, pub: Uint8Array, psk?: Uint8Array): PeerKeys {
  return {
    pub,
    psk: psk ?? new Uint8Array(32),
    staticShared: x25519(id.priv, pub),
    mac1Key: blake2s(LABEL_MAC1, pub),
    cookieKey: blake2s(LABEL_COOKIE, pub),
  };
}

/** A handshake in progress: the Noise state after the initiation, on either side. */
export interface HandshakeState {
  /** Our index for this handshake (and for the keypair it yields). */
  readonly localIndex: number;
  /** The peer's index (responder side: from the initiation; initiator: set from the response). */
  remoteIndex: number;
  /** The chaining key. */
  chainKey: Uint8Array;
  /** The handshake hash. */
  hash: Uint8Array;
  /** Our ephemeral private key (initiator side). */
  readonly ephemeralPriv: Uint8Array | null;
  /** The peer's ephemeral public key (responder side). */
  readonly remoteEphemeral: Uint8Array | null;
}

/** The transport keys a completed handshake yields. */
export interface SessionKeys {
  /** Our index: the receiver index of data sent to us. */
  readonly localIndex: number;
  /** The peer's index: the receiver index of data we send. */
  readonly remoteIndex: number;
  /** The key we seal with. */
  readonly send: Uint8Array;
  /** The key we open with. */
  readonly recv: Uint8Array;
  /** True on the side that sent the initiation. */
  readonly isInitiator: boolean;
}

const TAI64_BASE = 2n ** 62n + 10n;
/** Nanoseconds are rounded down to 2^24 ns (≈ 16.8 ms), as wireguard-go does, so a timestamp
 * does not reveal the clock precisely. */
const WHITENER = 0x1000000;

/** The 12-byte TAI64N label of `unixMs` (ms since the epoch). */
export function tai64n(unixMs: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(12);
  const v = new DataView(out.buffer);
  const secs = Math.floor(unixMs / 1000);
  const nanos = Math.floor((unixMs - secs * 1000) * 1e6);
  v.setBigUint64(0, TAI64_BASE + BigInt(secs), false);
  v.setUint32(8, nanos - (nanos % WHITENER), false);
  return out;
}

/** Compares two TAI64N labels bytewise: > 0 when `a` is later. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 12; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

function mixHash(h: Uint8Array, data: Uint8Array): Uint8Array<ArrayBuffer> {
  return blake2s(h, data);
}

function u32le(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

function putU32le(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 255;
  b[off + 1] = (v >>> 8) & 255;
  b[off + 2] = (v >>> 16) & 255;
  b[off + 3] = (v >>> 24) & 255;
}

/** The little-endian u32 at `off` (message indices). */
export const readIndex = u32le;
/** Writes a little-endian u32 at `off`. */
export const writeIndex = putU32le;

/**
 * Builds a handshake initiation to `peer` (MACs still zero: see {@link writeMacs}). `ephemeral`
 * is for tests; normally a fresh key is generated.
 */
export function createInitiation(
  id: Identity,
  peer: PeerKeys,
  localIndex: number,
  unixMs: number,
  ephemeral: Uint8Array = generatePrivateKey(),
): { msg: Uint8Array<ArrayBuffer>; state: HandshakeState } | null {
  if (peer.staticShared === null) return null;
  const msg = new Uint8Array(INITIATION_SIZE);
  msg[0] = MSG_INITIATION;
  putU32le(msg, INIT_SENDER, localIndex);
  let h = mixHash(INITIAL_HASH, peer.pub);
  let c: Uint8Array = INITIAL_CHAIN_KEY;
  const epub = x25519Base(ephemeral);
  msg.set(epub, INIT_EPHEMERAL);
  [c] = kdf(1, c, epub);
  h = mixHash(h, epub);
  const es = x25519(ephemeral, peer.pub);
  if (es === null) return null;
  let k: Uint8Array;
  [c, k] = kdf(2, c, es);
  const encStatic = aeadSeal(k, ZERO_NONCE, id.pub, h);
  msg.set(encStatic, INIT_STATIC);
  h = mixHash(h, encStatic);
  [c, k] = kdf(2, c, peer.staticShared);
  const encTime = aeadSeal(k, ZERO_NONCE, tai64n(unixMs), h);
  msg.set(encTime, INIT_TIMESTAMP);
  h = mixHash(h, encTime);
  return {
    msg,
    state: {
      localIndex,
      remoteIndex: 0,
      chainKey: c,
      hash: h,
      ephemeralPriv: ephemeral,
      remoteEphemeral: null,
    },
  };
}

/** What the responder learns from a valid initiation. */
export interface ConsumedInitiation {
  /** The initiator's static public key (authenticated). */
  readonly peerPub: Uint8Array;
  /** The initiation's TAI64N timestamp (to refuse replays: it must grow). */
  readonly timestamp: Uint8Array;
  /** The Noise state, with the initiator's index as `remoteIndex` (our index still 0). */
  readonly chainKey: Uint8Array;
  /** The handshake hash after the initiation. */
  readonly hash: Uint8Array;
  /** The initiator's index. */
  readonly remoteIndex: number;
  /** The initiator's ephemeral public key. */
  readonly remoteEphemeral: Uint8Array;
}

/**
 * Decrypts an initiation (MAC1 already checked): the initiator's identity and state, or null
 * when it does not decrypt or `lookup` knows no peer with that key.
 */
export function consumeInitiation(
  id: Identity,
  msg: Uint8Array,
  lookup: (pub: Uint8Array) => PeerKeys | undefined,
): { init: ConsumedInitiation; peer: PeerKeys } | "unknown-peer" | null {
  if (msg.length !== INITIATION_SIZE || msg[0] !== MSG_INITIATION) return null;
  const epub = msg.slice(INIT_EPHEMERAL, INIT_EPHEMERAL + 32);
  let h = mixHash(INITIAL_HASH, id.pub);
  let c: Uint8Array = INITIAL_CHAIN_KEY;
  [c] = kdf(1, c, epub);
  h = mixHash(h, epub);
  const es = x25519(id.priv, epub);
  if (es === null) return null;
  let k: Uint8Array;
  [c, k] = kdf(2, c, es);
  const encStatic = msg.subarray(INIT_STATIC, INIT_STATIC + 48);
  const peerPub = aeadOpen(k, ZERO_NONCE, encStatic, h);
  if (peerPub === null) return null;
  h = mixHash(h, encStatic);
  const peer = lookup(peerPub);
  if (peer === undefined) return "unknown-peer";
  if (peer.staticShared === null) return null;
  [c, k] = kdf(2, c, peer.staticShared);
  const encTime = msg.subarray(INIT_TIMESTAMP, INIT_TIMESTAMP + 28);
  const timestamp = aeadOpen(k, ZERO_NONCE, encTime, h);
  if (timestamp === null) return null;
  h = mixHash(h, encTime);
  return {
    init: {
      peerPub,
      timestamp,
      chainKey: c,
      hash: h,
      remoteIndex: u32le(msg, INIT_SENDER),
      remoteEphemeral: epub,
    },
    peer,
  };
}

/** Builds the response to a consumed initiation (MACs still zero) and the session keys. */
export function createResponse(
  peer: PeerKeys,
  init: ConsumedInitiation,
  localIndex: number,
  ephemeral: Uint8Array = generatePrivateKey(),
): { msg: Uint8Array<ArrayBuffer>; keys: SessionKeys } | null {
  const msg = new Uint8Array(RESPONSE_SIZE);
  msg[0] = MSG_RESPONSE;
  putU32le(msg, RESP_SENDER, localIndex);
  putU32le(msg, RESP_RECEIVER, init.remoteIndex);
  const epub = x25519Base(ephemeral);
  msg.set(epub, RESP_EPHEMERAL);
  let c: Uint8Array = init.chainKey;
  let h: Uint8Array = init.hash;
  [c] = kdf(1, c, epub);
  h = mixHash(h, epub);
  const ee = x25519(ephemeral, init.remoteEphemeral);
  const se = x25519(ephemeral, peer.pub);
  if (ee === null || se === null) return null;
  [c] = kdf(1, c, ee);
  [c] = kdf(1, c, se);
  const [c2, tau, k] = kdf(3, c, peer.psk);
  c = c2;
  h = mixHash(h, tau);
  const empty = aeadSeal(k, ZERO_NONCE, EMPTY, h);
  msg.set(empty, RESP_EMPTY);
  const [recv, send] = kdf(2, c, EMPTY);
  return {
    msg,
    keys: { localIndex, remoteIndex: init.remoteIndex, send, recv, isInitiator: false },
  };
}

/** The indices of a response: sender (the responder's) and receiver (ours). */
export function responseIndices(msg: Uint8Array): { sender: number; receiver: number } {
  return { sender: u32le(msg, RESP_SENDER), receiver: u32le(msg, RESP_RECEIVER) };
}

/** Consumes a response to our initiation (MAC1 already checked): the session keys, or null. */
export function consumeResponse(
  id: Identity,
  peer: PeerKeys,
  state: HandshakeState,
  msg: Uint8Array,
): SessionKeys | null {
  if (msg.length !== RESPONSE_SIZE || msg[0] !== MSG_RESPONSE) return null;
  if (state.ephemeralPriv === null || u32le(msg, RESP_RECEIVER) !== state.localIndex) return null;
  const epub = msg.slice(RESP_EPHEMERAL, RESP_EPHEMERAL + 32);
  let c: Uint8Array = state.chainKey;
  let h: Uint8Array = state.hash;
  [c] = kdf(1, c, epub);
  h = mixHash(h, epub);
  const ee = x25519(state.ephemeralPriv, epub);
  const se = x25519(id.priv, epub);
  if (ee === null || se === null) return null;
  [c] = kdf(1, c, ee);
  [c] = kdf(1, c, se);
  const [c2, tau, k] = kdf(3, c, peer.psk);
  c = c2;
  h = mixHash(h, tau);
  if (aeadOpen(k, ZERO_NONCE, msg.subarray(RESP_EMPTY, RESP_EMPTY + 16), h) === null) return null;
  const [send, recv] = kdf(2, c, EMPTY);
  return {
    localIndex: state.localIndex,
    remoteIndex: u32le(msg, RESP_SENDER),
    send,
    recv,
    isInitiator: true,
  };
}

/** The offset of MAC1 in a handshake message (initiation or response), or -1. */
export function mac1Offset(msg: Uint8Array): number {
  if (msg.length === INITIATION_SIZE && msg[0] === MSG_INITIATION) return INIT_MAC1;
  if (msg.length === RESPONSE_SIZE && msg[0] === MSG_RESPONSE) return RESP_MAC1;
  return -1;
}

/**
 * Writes MAC1 (keyed by the receiver's `mac1Key`) and MAC2 (keyed by `cookie`, or zeros) into a
 * handshake message; returns the MAC1 (a cookie reply to this message is bound to it).
 */
export function writeMacs(
  msg: Uint8Array,
  mac1Key: Uint8Array,
  cookie: Uint8Array | null,
): Uint8Array<ArrayBuffer> {
  const off = mac1Offset(msg);
  const mac1 = mac16(mac1Key, msg.subarray(0, off));
  msg.set(mac1, off);
  if (cookie !== null) msg.set(mac16(cookie, msg.subarray(0, off + 16)), off + 16);
  else msg.fill(0, off + 16, off + 32);
  return mac1;
}

/** True when the message's MAC1 is right for the receiver key `mac1Key`. */
export function checkMac1(msg: Uint8Array, mac1Key: Uint8Array): boolean {
  const off = mac1Offset(msg);
  if (off < 0) return false;
  return equal16(mac16(mac1Key, msg.subarray(0, off)), msg, off);
}

/** True when the message's MAC2 is right for `cookie`. */
export function checkMac2(msg: Uint8Array, cookie: Uint8Array): boolean {
  const off = mac1Offset(msg);
  if (off < 0) return false;
  return equal16(mac16(cookie, msg.subarray(0, off + 16)), msg, off + 16);
}

/** Constant-time comparison of 16 bytes of `a` with `b` at `off`. */
function equal16(a: Uint8Array, b: Uint8Array, off: number): boolean {
  let d = 0;
  for (let i = 0; i < 16; i++) d |= a[i] ^ b[off + i];
  return d === 0;
}
