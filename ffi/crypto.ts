/**
 * The second and third `Deno.dlopen` of the project: the crypto libraries, for the wireguard
 * backend. Opened when this module is first imported — only the wireguard backend imports it,
 * and backends are loaded on demand, so a host running vxlan never loads them — once per isolate
 * (every Worker that uses them opens its own, as with libc). Not on first use: a library opened
 * in the middle of a test counts as a leaked resource for Deno's sanitizer.
 *
 * Which library does what was picked by measurement (ChaCha20-Poly1305 on 1400-byte packets
 * through FFI, preallocated buffers, best of 6 rounds on this machine's AVX-512 CPU, Deno
 * 2.9.6): OpenSSL 3.0 libcrypto seals 1.03–1.15 GB/s and opens 1.11–1.21 GB/s with four EVP calls
 * per packet; libsodium 1.0.18 seals 0.62–0.77 GB/s and opens 0.75–0.80 GB/s with one call.
 * So the transport data path ({@link PacketAead}) uses libcrypto. libsodium has what libcrypto
 * lacks or makes awkward and what runs only per handshake: X25519 (one call instead of
 * EVP_PKEY objects), XChaCha20-Poly1305 (not in OpenSSL 3.0; cookie replies), the handshake's
 * ChaCha20-Poly1305 with associated data, and the CSPRNG. BLAKE2s is in TypeScript
 * (lib/backend/wireguard/blake2s.ts): libsodium has only BLAKE2b, and libcrypto's keyed
 * BLAKE2s needs OSSL_PARAM arrays for a handshake-only hash.
 *
 * `FLANNEL_LIBCRYPTO` and `FLANNEL_LIBSODIUM` override the library probes.
 *
 * Fast-path rules (docs/udp-datapath-notes): hot-path parameters are pointers and 32-bit
 * integers, every pointer is computed once. A `u32` is only used for a 64-bit C parameter that
 * is passed in a register (x86-64 writes of 32-bit registers clear the upper half); a zero
 * length in a stack slot (7th argument and later) is passed as a NULL pointer, which is a full
 * 64-bit zero — a `u32` there leaves the upper half undefined (measured: a segfault).
 */

const ARCH_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/lib",
  "/lib",
];

// int crypto_aead_*_ietf_encrypt(unsigned char *c, unsigned long long *clen_p,
//     const unsigned char *m, unsigned long long mlen, const unsigned char *ad,
//     unsigned long long adlen, const unsigned char *nsec, const unsigned char *npub,
//     const unsigned char *k);
const AEAD_ENCRYPT = {
  parameters: [
    "buffer",
    "pointer",
    "buffer",
    "u64",
    "buffer",
    "u64",
    "pointer",
    "buffer",
    "buffer",
  ],
  result: "i32",
} as const;
// int crypto_aead_*_ietf_decrypt(unsigned char *m, unsigned long long *mlen_p,
//     unsigned char *nsec, const unsigned char *c, unsigned long long clen,
//     const unsigned char *ad, unsigned long long adlen, const unsigned char *npub,
//     const unsigned char *k);
const AEAD_DECRYPT = {
  parameters: [
    "buffer",
    "pointer",
    "pointer",
    "buffer",
    "u64",
    "buffer",
    "u64",
    "buffer",
    "buffer",
  ],
  result: "i32",
} as const;

/** libsodium's prototypes (sodium/crypto_scalarmult_curve25519.h, crypto_aead_*.h, randombytes.h). */
const SODIUM_SYMBOLS = {
  // int sodium_init(void);
  sodium_init: { parameters: [], result: "i32" },
  // int crypto_scalarmult_curve25519(unsigned char *q, const unsigned char *n,
  //                                  const unsigned char *p);
  crypto_scalarmult_curve25519: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  // int crypto_scalarmult_curve25519_base(unsigned char *q, const unsigned char *n);
  crypto_scalarmult_curve25519_base: { parameters: ["buffer", "buffer"], result: "i32" },
  // The 12-byte-nonce and the 24-byte-nonce (X) AEADs share their prototypes.
  crypto_aead_chacha20poly1305_ietf_encrypt: AEAD_ENCRYPT,
  crypto_aead_chacha20poly1305_ietf_decrypt: AEAD_DECRYPT,
  crypto_aead_xchacha20poly1305_ietf_encrypt: AEAD_ENCRYPT,
  crypto_aead_xchacha20poly1305_ietf_decrypt: AEAD_DECRYPT,
  // The same two, pointer forms for PacketAeadSodium (the library comparison of
  // scripts/bench_crypto.ts). mlen/clen are passed in registers (u32 is enough); adlen is 0,
  // passed as a NULL pointer: a full 64-bit zero, also in a stack slot.
  aead_encrypt_ptr: {
    name: "crypto_aead_chacha20poly1305_ietf_encrypt",
    parameters: [
      "pointer",
      "pointer",
      "pointer",
      "u32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
    ],
    result: "i32",
  },
  aead_decrypt_ptr: {
    name: "crypto_aead_chacha20poly1305_ietf_decrypt",
    parameters: [
      "pointer",
      "pointer",
      "pointer",
      "pointer",
      "u32",
      "pointer",
      "pointer",
      "pointer",
      "pointer",
    ],
    result: "i32",
  },
  // void randombytes_buf(void *buf, size_t size);
  randombytes_buf: { parameters: ["buffer", "u64"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libcrypto's prototypes (openssl/evp.h), for the transport data path. */
const LIBCRYPTO_SYMBOLS = {
  // EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  // void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx);
  EVP_CIPHER_CTX_free: { parameters: ["pointer"], result: "void" },
  // const EVP_CIPHER *EVP_chacha20_poly1305(void);
  EVP_chacha20_poly1305: { parameters: [], result: "pointer" },
  // int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, ENGINE *impl,
  //                        const unsigned char *key, const unsigned char *iv);
  EVP_EncryptInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  // int EVP_DecryptInit_ex(... same as EVP_EncryptInit_ex ...);
  EVP_DecryptInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  // int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
  //                       const unsigned char *in, int inl);
  EVP_EncryptUpdate: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "i32"],
    result: "i32",
  },
  // int EVP_DecryptUpdate(... same as EVP_EncryptUpdate ...);
  EVP_DecryptUpdate: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "i32"],
    result: "i32",
  },
  // int EVP_EncryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl);
  EVP_EncryptFinal_ex: { parameters: ["pointer", "pointer", "pointer"], result: "i32" },
  // int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl);
  EVP_DecryptFinal_ex: { parameters: ["pointer", "pointer", "pointer"], result: "i32" },
  // int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr);
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** `EVP_CTRL_AEAD_GET_TAG` (openssl/evp.h). */
const EVP_CTRL_AEAD_GET_TAG = 0x10;
/** `EVP_CTRL_AEAD_SET_TAG` (openssl/evp.h). */
const EVP_CTRL_AEAD_SET_TAG = 0x11;

function openLibrary<S extends Deno.ForeignLibraryInterface>(
  what: string,
  envVar: string,
  files: string[],
  symbols: S,
): Deno.DynamicLibrary<S> {
  const override = Deno.env.get(envVar);
  const paths = override ? [override] : ARCH_DIRS.flatMap((d) => files.map((f) => `${d}/${f}`));
  const failures: string[] = [];
  for (const path of paths) {
    try {
      Deno.statSync(path);
    } catch {
      if (override) failures.push(`${path}: not found`);
      continue;
    }
    try {
      return Deno.dlopen(path, symbols);
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message}`);
    }
  }
  const detail = failures.length > 0 ? failures.join("; ") : `no ${files.join(" or ")} found`;
  throw new Error(`Cannot load ${what} (set ${envVar} to its absolute path): ${detail}`);
}

function openSodium(): Deno.DynamicLibrary<typeof SODIUM_SYMBOLS> {
  const lib = openLibrary("libsodium", "FLANNEL_LIBSODIUM", [
    "libsodium.so.23",
    "libsodium.so.26",
    "libsodium.so",
  ], SODIUM_SYMBOLS);
  // 0 = initialised now, 1 = already; -1 = failure (no entropy source).
  if (lib.symbols.sodium_init() < 0) {
    lib.close();
    throw new Error("Cannot initialise libsodium: sodium_init failed");
  }
  return lib;
}

const sodiumSymbols = openSodium().symbols;
const cryptoSymbols = openLibrary("libcrypto", "FLANNEL_LIBCRYPTO", [
  "libcrypto.so.3",
  "libcrypto.so",
], LIBCRYPTO_SYMBOLS).symbols;

function sodium(): typeof sodiumSymbols {
  return sodiumSymbols;
}

function libcrypto(): typeof cryptoSymbols {
  return cryptoSymbols;
}

/**
 * A zeroed buffer whose address stays put: V8 keeps the data of a small typed array made with
 * `new Uint8Array(n)` (up to 64 bytes) inside its own heap, where a garbage collection can move
 * it, while an explicit ArrayBuffer's data is allocated outside the heap. Every buffer whose
 * address is kept across calls must come from here.
 */
function offHeap(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(n));
}

/** Bytes of an X25519 key, of a ChaCha20-Poly1305 key. */
export const KEY_LEN = 32;
/** Bytes of a Poly1305 tag. */
export const TAG_LEN = 16;

/** `len` bytes from libsodium's CSPRNG (getrandom). */
export function randomBytes(len: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(len);
  sodium().randombytes_buf(out, BigInt(len));
  return out;
}

/**
 * X25519 (RFC 7748): `scalar` times the point `point`. Null when the result is all zeros (a
 * low-order point), which WireGuard must reject.
 */
export function x25519(scalar: Uint8Array, point: Uint8Array): Uint8Array<ArrayBuffer> | null {
  if (scalar.length !== KEY_LEN || point.length !== KEY_LEN) {
    throw new RangeError("X25519 keys are 32 bytes");
  }
  const out = new Uint8Array(KEY_LEN);
  const rc = sodium().crypto_scalarmult_curve25519(out, copy(scalar), copy(point));
  return rc === 0 ? out : null;
}

/** The X25519 public key of `scalar` (scalar times the base point 9). */
export function x25519Base(scalar: Uint8Array): Uint8Array<ArrayBuffer> {
  if (scalar.length !== KEY_LEN) throw new RangeError("X25519 keys are 32 bytes");
  const out = new Uint8Array(KEY_LEN);
  if (sodium().crypto_scalarmult_curve25519_base(out, copy(scalar)) !== 0) {
    throw new Error("Cannot derive an X25519 public key: crypto_scalarmult_curve25519_base failed");
  }
  return out;
}

/** ChaCha20-Poly1305 (RFC 8439) with a 12-byte nonce: ciphertext ‖ tag. */
export function aeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return sodiumSeal("crypto_aead_chacha20poly1305_ietf_encrypt", 12, key, nonce, plaintext, aad);
}

/** Opens {@link aeadSeal}'s output: the plaintext, or null when the tag does not verify. */
export function aeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Uint8Array<ArrayBuffer> | null {
  return sodiumOpen("crypto_aead_chacha20poly1305_ietf_decrypt", 12, key, nonce, sealed, aad);
}

/** XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) with a 24-byte nonce: ciphertext ‖ tag. */
export function xaeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return sodiumSeal("crypto_aead_xchacha20poly1305_ietf_encrypt", 24, key, nonce, plaintext, aad);
}

/** Opens {@link xaeadSeal}'s output: the plaintext, or null when the tag does not verify. */
export function xaeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Uint8Array<ArrayBuffer> | null {
  return sodiumOpen("crypto_aead_xchacha20poly1305_ietf_decrypt", 24, key, nonce, sealed, aad);
}

/** libsodium's `*_ietf_encrypt` of `plaintext`: ciphertext ‖ tag. */
function sodiumSeal(
  fn: "crypto_aead_chacha20poly1305_ietf_encrypt" | "crypto_aead_xchacha20poly1305_ietf_encrypt",
  nonceLen: number,
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Uint8Array<ArrayBuffer> {
  checkAead(key, nonce, nonceLen);
  const out = new Uint8Array(plaintext.length + TAG_LEN);
  sodium()[fn](
    out,
    null,
    copy(plaintext),
    BigInt(plaintext.length),
    copy(aad),
    BigInt(aad.length),
    null,
    copy(nonce),
    copy(key),
  );
  return out;
}

/** libsodium's `*_ietf_decrypt` of `sealed`: the plaintext, or null when the tag fails. */
function sodiumOpen(
  fn: "crypto_aead_chacha20poly1305_ietf_decrypt" | "crypto_aead_xchacha20poly1305_ietf_decrypt",
  nonceLen: number,
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Uint8Array<ArrayBuffer> | null {
  checkAead(key, nonce, nonceLen);
  if (sealed.length < TAG_LEN) return null;
  const out = new Uint8Array(sealed.length - TAG_LEN);
  const rc = sodium()[fn](
    out,
    null,
    null,
    copy(sealed),
    BigInt(sealed.length),
    copy(aad),
    BigInt(aad.length),
    copy(nonce),
    copy(key),
  );
  return rc === 0 ? out : null;
}

function checkAead(key: Uint8Array, nonce: Uint8Array, nonceLen: number): void {
  if (key.length !== KEY_LEN) throw new RangeError("AEAD keys are 32 bytes");
  if (nonce.length !== nonceLen) throw new RangeError(`This AEAD's nonces are ${nonceLen} bytes`);
}

/** A copy backed by its own ArrayBuffer (FFI `buffer` parameters need one; views may be shared). */
function copy(b: Uint8Array): Uint8Array<ArrayBuffer> {
  // A 0-length buffer still passes a valid pointer.
  return b.length === 0 ? new Uint8Array(1) : new Uint8Array(b);
}

/**
 * ChaCha20-Poly1305 for the transport data path, through libcrypto's EVP interface, over
 * memory registered once: packet buffers with {@link PacketAead.bind} (their addresses computed
 * at registration) and keys in numbered slots with {@link PacketAead.setKey}. Seal and open
 * take ids and lengths only, so a packet costs four FFI calls and no allocation.
 *
 * The nonce is WireGuard's: 32 zero bits then the 64-bit counter, little-endian. Counters are
 * JavaScript numbers; WireGuard never gets near 2^53 (REJECT_AFTER_MESSAGES and a 180 s key
 * lifetime stop far earlier).
 */
export class PacketAead implements TransportAead {
  readonly #enc: Deno.PointerValue;
  readonly #dec: Deno.PointerValue;
  readonly #keys: Uint8Array<ArrayBuffer>;
  readonly #keyPtrs: Deno.PointerValue[] = [];
  readonly #nonce = offHeap(12);
  readonly #nonceView = new DataView(this.#nonce.buffer);
  readonly #noncePtr: Deno.PointerValue;
  readonly #tag = offHeap(TAG_LEN);
  readonly #tagPtr: Deno.PointerValue;
  readonly #outl = new Int32Array(new ArrayBuffer(4));
  readonly #outlPtr: Deno.PointerValue;
  readonly #views: Uint8Array[] = [];
  readonly #ptrs: Deno.PointerValue[] = [];
  readonly #sym = libcrypto();
  #freed = false;

  /** Creates the two EVP contexts and room for `keySlots` keys. */
  constructor(readonly keySlots: number) {
    const s = this.#sym;
    const cipher = s.EVP_chacha20_poly1305();
    this.#enc = s.EVP_CIPHER_CTX_new();
    this.#dec = s.EVP_CIPHER_CTX_new();
    if (cipher === null || this.#enc === null || this.#dec === null) {
      throw new Error("Cannot set up ChaCha20-Poly1305: libcrypto returned NULL");
    }
    if (
      s.EVP_EncryptInit_ex(this.#enc, cipher, null, null, null) !== 1 ||
      s.EVP_DecryptInit_ex(this.#dec, cipher, null, null, null) !== 1
    ) {
      throw new Error("Cannot set up ChaCha20-Poly1305: EVP_*Init_ex failed");
    }
    this.#keys = offHeap(keySlots * KEY_LEN);
    const kp = Deno.UnsafePointer.of(this.#keys)!;
    for (let i = 0; i < keySlots; i++) {
      this.#keyPtrs.push(Deno.UnsafePointer.offset(kp, i * KEY_LEN));
    }
    this.#noncePtr = Deno.UnsafePointer.of(this.#nonce);
    this.#tagPtr = Deno.UnsafePointer.of(this.#tag);
    this.#outlPtr = Deno.UnsafePointer.of(this.#outl);
  }

  /**
   * Registers a buffer (a view: its own offset counts) and returns its id. The view must stay
   * alive and its ArrayBuffer must not be detached or resized while the id is in use.
   */
  bind(view: Uint8Array<ArrayBuffer>): number {
    this.#views.push(view);
    this.#ptrs.push(Deno.UnsafePointer.of(view));
    return this.#ptrs.length - 1;
  }

  /** Puts a 32-byte key into slot `slot`. */
  setKey(slot: number, key: Uint8Array): void {
    if (key.length !== KEY_LEN) throw new RangeError("AEAD keys are 32 bytes");
    if (slot < 0 || slot >= this.keySlots) throw new RangeError(`No key slot ${slot}`);
    this.#keys.set(key, slot * KEY_LEN);
  }

  /** Zeroes key slot `slot` (a key that is no longer used should not stay in memory). */
  clearKey(slot: number): void {
    this.#keys.fill(0, slot * KEY_LEN, (slot + 1) * KEY_LEN);
  }

  #setNonce(counter: number): void {
    const v = this.#nonceView;
    v.setUint32(4, counter >>> 0, true);
    v.setUint32(8, Math.floor(counter / 0x1_0000_0000) >>> 0, true);
  }

  /**
   * Seals `len` bytes at the start of buffer `src` into buffer `dst` at byte `dstOff`
   * (ciphertext, then the 16 tag bytes): `len + 16` bytes are written. `src` and `dst` may be the
   * same buffer. A non-zero `dstOff` costs one pointer computation (≈ 50 ns).
   */
  seal(slot: number, counter: number, src: number, len: number, dst: number, dstOff = 0): void {
    const s = this.#sym;
    this.#setNonce(counter);
    const ctx = this.#enc;
    const out = dstOff === 0
      ? this.#ptrs[dst]
      : Deno.UnsafePointer.offset(this.#ptrs[dst]!, dstOff);
    s.EVP_EncryptInit_ex(ctx, null, null, this.#keyPtrs[slot], this.#noncePtr);
    s.EVP_EncryptUpdate(ctx, out, this.#outlPtr, this.#ptrs[src], len);
    s.EVP_EncryptFinal_ex(ctx, out, this.#outlPtr);
    s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, this.#tagPtr);
    const d = this.#views[dst];
    const t = this.#tag;
    const at = dstOff + len;
    for (let i = 0; i < TAG_LEN; i++) d[at + i] = t[i];
  }

  /**
   * Opens `len` bytes (ciphertext and tag) at byte `srcOff` of buffer `src` into buffer `dst`:
   * true when the tag verifies, and then `len - 16` plaintext bytes are in `dst`. On false,
   * `dst` holds unauthenticated bytes that must not be used.
   */
  open(slot: number, counter: number, src: number, len: number, dst: number, srcOff = 0): boolean {
    if (len < TAG_LEN) return false;
    const s = this.#sym;
    this.#setNonce(counter);
    const n = len - TAG_LEN;
    const v = this.#views[src];
    const t = this.#tag;
    const at = srcOff + n;
    for (let i = 0; i < TAG_LEN; i++) t[i] = v[at + i];
    const ctx = this.#dec;
    const out = this.#ptrs[dst];
    const inp = srcOff === 0
      ? this.#ptrs[src]
      : Deno.UnsafePointer.offset(this.#ptrs[src]!, srcOff);
    s.EVP_DecryptInit_ex(ctx, null, null, this.#keyPtrs[slot], this.#noncePtr);
    s.EVP_DecryptUpdate(ctx, out, this.#outlPtr, inp, n);
    s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, this.#tagPtr);
    return s.EVP_DecryptFinal_ex(ctx, out, this.#outlPtr) === 1;
  }

  /** Frees the EVP contexts and zeroes the keys. */
  [Symbol.dispose](): void {
    this.#keys.fill(0);
    if (this.#freed) return; // a second dispose must not free the contexts again
    this.#freed = true;
    this.#sym.EVP_CIPHER_CTX_free(this.#enc);
    this.#sym.EVP_CIPHER_CTX_free(this.#dec);
  }
}

/** What the transport data path needs of an AEAD over registered buffers. */
export interface TransportAead extends Disposable {
  /** Number of key slots. */
  readonly keySlots: number;
  /** Registers a buffer; its id. */
  bind(view: Uint8Array<ArrayBuffer>): number;
  /** Puts a key into a slot. */
  setKey(slot: number, key: Uint8Array): void;
  /** Seals `len` bytes of `src` into `dst` (+16 tag bytes). */
  seal(slot: number, counter: number, src: number, len: number, dst: number): void;
  /** Opens `len` bytes (with tag) of `src` into `dst`; true when authentic. */
  open(slot: number, counter: number, src: number, len: number, dst: number): boolean;
}

/**
 * {@link PacketAead}'s interface over libsodium (one call per packet), kept for the library
 * comparison in scripts/bench_crypto.ts; the data path uses libcrypto, which measured faster.
 */
export class PacketAeadSodium implements TransportAead {
  readonly #keys: Uint8Array<ArrayBuffer>;
  readonly #keyPtrs: Deno.PointerValue[] = [];
  readonly #nonce = offHeap(12);
  readonly #nonceView = new DataView(this.#nonce.buffer);
  readonly #noncePtr: Deno.PointerValue;
  readonly #ptrs: Deno.PointerValue[] = [];
  readonly #sym = sodium();

  /** Room for `keySlots` keys. */
  constructor(readonly keySlots: number) {
    this.#keys = offHeap(keySlots * KEY_LEN);
    const kp = Deno.UnsafePointer.of(this.#keys)!;
    for (let i = 0; i < keySlots; i++) {
      this.#keyPtrs.push(Deno.UnsafePointer.offset(kp, i * KEY_LEN));
    }
    this.#noncePtr = Deno.UnsafePointer.of(this.#nonce);
  }

  bind(view: Uint8Array<ArrayBuffer>): number {
    this.#ptrs.push(Deno.UnsafePointer.of(view));
    return this.#ptrs.length - 1;
  }

  setKey(slot: number, key: Uint8Array): void {
    this.#keys.set(key, slot * KEY_LEN);
  }

  seal(slot: number, counter: number, src: number, len: number, dst: number): void {
    this.#nonceView.setUint32(4, counter >>> 0, true);
    this.#nonceView.setUint32(8, Math.floor(counter / 0x1_0000_0000) >>> 0, true);
    this.#sym.aead_encrypt_ptr(
      this.#ptrs[dst],
      null,
      this.#ptrs[src],
      len,
      null,
      null,
      null,
      this.#noncePtr,
      this.#keyPtrs[slot],
    );
  }

  open(slot: number, counter: number, src: number, len: number, dst: number): boolean {
    this.#nonceView.setUint32(4, counter >>> 0, true);
    this.#nonceView.setUint32(8, Math.floor(counter / 0x1_0000_0000) >>> 0, true);
    return this.#sym.aead_decrypt_ptr(
      this.#ptrs[dst],
      null,
      null,
      this.#ptrs[src],
      len,
      null,
      null,
      this.#noncePtr,
      this.#keyPtrs[slot],
    ) === 0;
  }

  [Symbol.dispose](): void {
    this.#keys.fill(0);
  }
}
