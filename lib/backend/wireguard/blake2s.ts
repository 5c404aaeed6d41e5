/**
 * BLAKE2s (RFC 7693), plain and keyed, any digest length 1–32 bytes, and WireGuard's HMAC and
 * HKDF over it.
 *
 * In TypeScript because no library we load has a convenient BLAKE2s (libsodium has only
 * BLAKE2b; libcrypto's keyed variant needs OSSL_PARAM arrays) and WireGuard hashes only during
 * handshakes and MAC checks — never per data packet. Tested against RFC 7693's vector, the
 * reference implementation's keyed test vectors, and OpenSSL's BLAKE2s as a second oracle.
 */

const IV = new Uint32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

// RFC 7693 §2.7, the message word permutations of the ten rounds.
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
].map((r) => Uint8Array.from(r));

/** An incremental BLAKE2s. */
export class Blake2s {
  readonly #h = new Uint32Array(8);
  readonly #v = new Uint32Array(16);
  readonly #m = new Uint32Array(16);
  readonly #buf = new Uint8Array(64);
  #bufLen = 0;
  #t = 0; // bytes compressed so far (< 2^53)
  #done = false;

  /** Starts a hash of `outLen` bytes (1–32), keyed when `key` (≤ 32 bytes) is given. */
  constructor(readonly outLen = 32, key?: Uint8Array) {
    const keyLen = key?.length ?? 0;
    if (outLen < 1 || outLen > 32) throw new RangeError("BLAKE2s digests are 1 to 32 bytes");
    if (keyLen > 32) throw new RangeError("BLAKE2s keys are at most 32 bytes");
    this.#h.set(IV);
    this.#h[0] ^= 0x01010000 ^ (keyLen << 8) ^ outLen;
    if (key !== undefined && keyLen > 0) {
      this.#buf.set(key);
      this.#bufLen = 64; // the key block is a whole block, compressed once more data arrives
    }
  }

  /** Absorbs `data`. */
  update(data: Uint8Array): this {
    if (this.#done) throw new Error("BLAKE2s: update after digest");
    let i = 0;
    while (i < data.length) {
      if (this.#bufLen === 64) {
        this.#t += 64;
        this.#compress(false);
        this.#bufLen = 0;
      }
      const n = Math.min(64 - this.#bufLen, data.length - i);
      this.#buf.set(data.subarray(i, i + n), this.#bufLen);
      this.#bufLen += n;
      i += n;
    }
    return this;
  }

  /** The digest; the hash cannot be updated afterwards. */
  digest(): Uint8Array<ArrayBuffer> {
    if (this.#done) throw new Error("BLAKE2s: digest called twice");
    this.#done = true;
    this.#t += this.#bufLen;
    this.#buf.fill(0, this.#bufLen);
    this.#compress(true);
    const out = new Uint8Array(this.outLen);
    for (let i = 0; i < this.outLen; i++) out[i] = this.#h[i >> 2] >>> (8 * (i & 3));
    return out;
  }

  #compress(last: boolean): void {
    const v = this.#v, m = this.#m, h = this.#h, b = this.#buf;
    for (let i = 0; i < 16; i++) {
      m[i] = b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (b[4 * i + 3] << 24);
    }
    v.set(h);
    v.set(IV, 8);
    v[12] ^= this.#t >>> 0;
    v[13] ^= Math.floor(this.#t / 0x1_0000_0000);
    if (last) v[14] = ~v[14];
    for (let r = 0; r < 10; r++) {
      const s = SIGMA[r];
      g(v, m, 0, 4, 8, 12, s[0], s[1]);
      g(v, m, 1, 5, 9, 13, s[2], s[3]);
      g(v, m, 2, 6, 10, 14, s[4], s[5]);
      g(v, m, 3, 7, 11, 15, s[6], s[7]);
      g(v, m, 0, 5, 10, 15, s[8], s[9]);
      g(v, m, 1, 6, 11, 12, s[10], s[11]);
      g(v, m, 2, 7, 8, 13, s[12], s[13]);
      g(v, m, 3, 4, 9, 14, s[14], s[15]);
    }
    for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
  }
}

// RFC 7693 §3.1, the mixing function G with BLAKE2s's rotations 16, 12, 8, 7.
function g(
  v: Uint32Array,
  m: Uint32Array,
  a: number,
  b: number,
  c: number,
  d: number,
  x: number,
  y: number,
): void {
  v[a] = v[a] + v[b] + m[x];
  v[d] = rotr(v[d] ^ v[a], 16);
  v[c] = v[c] + v[d];
  v[b] = rotr(v[b] ^ v[c], 12);
  v[a] = v[a] + v[b] + m[y];
  v[d] = rotr(v[d] ^ v[a], 8);
  v[c] = v[c] + v[d];
  v[b] = rotr(v[b] ^ v[c], 7);
}

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

/** BLAKE2s-256 of the concatenation of `parts` (the whitepaper's HASH). */
export function blake2s(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const h = new Blake2s(32);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Keyed BLAKE2s with a 16-byte digest (the whitepaper's MAC, used for MAC1 and MAC2). */
export function mac16(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const h = new Blake2s(16, key);
  for (const p of parts) h.update(p);
  return h.digest();
}

const BLOCK = 64;

/** HMAC (RFC 2104) over BLAKE2s-256, 64-byte blocks (the whitepaper's HMAC). */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const k = new Uint8Array(BLOCK);
  k.set(key.length > BLOCK ? blake2s(key) : key);
  const ipad = k.map((x) => x ^ 0x36);
  const opad = k.map((x) => x ^ 0x5c);
  const inner = new Blake2s(32).update(ipad);
  for (const p of parts) inner.update(p);
  return new Blake2s(32).update(opad).update(inner.digest()).digest();
}

/**
 * The whitepaper's KDF_n (HKDF, RFC 5869, with HMAC-BLAKE2s, empty info): `n` (1–3) 32-byte
 * outputs keyed by the chaining key `key` over `input`.
 */
export function kdf(n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Uint8Array<ArrayBuffer>[] {
  const prk = hmac(key, input);
  const out: Uint8Array<ArrayBuffer>[] = [];
  let prev: Uint8Array = new Uint8Array(0);
  for (let i = 1; i <= n; i++) {
    prev = hmac(prk, prev, Uint8Array.of(i));
    out.push(prev as Uint8Array<ArrayBuffer>);
  }
  return out;
}
