/**
 * WireGuard keys as text: base64 (`wg genkey`, config files, leases) and lowercase hex (the
 * UAPI), and private key generation.
 */

import { randomBytes, x25519Base } from "../../../ffi/crypto.ts";

/** Bytes of a WireGuard key (private, public, preshared). */
export const KEY_BYTES = 32;

/** Lowercase hex of `b`. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** The bytes of a hex string (whitespace ignored); throws on anything else. */
export function fromHex(s: string): Uint8Array<ArrayBuffer> {
  const t = s.replace(/\s+/g, "");
  if (t.length % 2 !== 0 || /[^0-9a-fA-F]/.test(t)) throw new Error(`Invalid hex string: ${s}`);
  const out = new Uint8Array(t.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Standard base64 (with padding) of `b`, as `wg` prints keys. */
export function toBase64(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

/**
 * A 32-byte key from its base64 form (44 characters, one `=`), or an error naming `what`, e.g.
 * `Invalid PSK: not 32 bytes of base64`.
 */
export function parseKey(text: string, what: string): Uint8Array<ArrayBuffer> {
  const t = text.trim();
  let raw: string;
  try {
    raw = atob(t);
  } catch {
    throw new Error(`Invalid ${what}: not 32 bytes of base64`);
  }
  if (raw.length !== KEY_BYTES || t.length !== 44) {
    throw new Error(`Invalid ${what}: not 32 bytes of base64`);
  }
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** Clamps an X25519 private key in place (RFC 7748 §5), as `wg genkey` stores it. */
export function clamp(key: Uint8Array): Uint8Array {
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

/** A new clamped private key from the CSPRNG. */
export function generatePrivateKey(): Uint8Array<ArrayBuffer> {
  const k = randomBytes(KEY_BYTES);
  clamp(k);
  return k;
}

/** The public key of a private key. */
export function publicKey(priv: Uint8Array): Uint8Array<ArrayBuffer> {
  return x25519Base(priv);
}
