/**
 * Test vectors for every WireGuard primitive: X25519 (RFC 7748), ChaCha20-Poly1305 (RFC 8439,
 * through libsodium and libcrypto), XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha A.3.1),
 * BLAKE2s (RFC 7693 Appendix B and the reference keyed KAT), HMAC-BLAKE2s and the HKDF.
 *
 * Vectors marked "python3" were computed with CPython's hashlib/hmac (an independent BLAKE2s
 * built from the reference code), e.g.
 * `python3 -c "import hashlib;print(hashlib.blake2s(bytes(range(3)),key=bytes(range(32)),digest_size=16).hexdigest())"`.
 */

import assert from "node:assert/strict";
import {
  aeadOpen,
  aeadSeal,
  PacketAead,
  PacketAeadSodium,
  randomBytes,
  x25519,
  x25519Base,
  xaeadOpen,
  xaeadSeal,
} from "../../ffi/crypto.ts";
import { Blake2s, blake2s, hmac, kdf, mac16 } from "../../lib/backend/wireguard/blake2s.ts";
import { fromHex, toHex } from "../../lib/backend/wireguard/keys.ts";

const seq = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 256);
const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("x25519() matches RFC 7748 §5.2 and §6.1", () => {
  assert.deepEqual(
    toHex(
      x25519(
        fromHex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
        fromHex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
      )!,
    ),
    "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
  );
  // §5.2, one iteration of k = X25519(k, u) from k = u = 9.
  const nine = new Uint8Array(32);
  nine[0] = 9;
  assert.deepEqual(
    toHex(x25519(nine, nine)!),
    "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
  );
  const alice = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const bob = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const alicePub = x25519Base(alice);
  const bobPub = x25519Base(bob);
  assert.deepEqual(
    toHex(alicePub),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  assert.deepEqual(
    toHex(bobPub),
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  );
  const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  assert.deepEqual(toHex(x25519(alice, bobPub)!), shared);
  assert.deepEqual(toHex(x25519(bob, alicePub)!), shared);
});

Deno.test("x25519() returns null for a low-order point (all-zero result)", () => {
  assert.deepEqual(x25519(randomBytes(32), new Uint8Array(32)), null);
  // 1 is of order 4 on Curve25519's twist-free form: the result is zero too.
  const one = new Uint8Array(32);
  one[0] = 1;
  assert.deepEqual(x25519(randomBytes(32), one), null);
});

const SUNSCREEN = enc(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, " +
    "sunscreen would be it.",
);
const AEAD_KEY = fromHex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
const AEAD_AAD = fromHex("50515253c0c1c2c3c4c5c6c7");

Deno.test("aeadSeal()/aeadOpen() match RFC 8439 §2.8.2", () => {
  const nonce = fromHex("070000004041424344454647");
  const sealed = aeadSeal(AEAD_KEY, nonce, SUNSCREEN, AEAD_AAD);
  assert.deepEqual(
    toHex(sealed),
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da9272" +
      "8b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b48" +
      "31d7bc3ff4def08e4b7a9de576d26586cec64b6116" + "1ae10b594f09e26a7e902ecbd0600691",
  );
  assert.deepEqual(aeadOpen(AEAD_KEY, nonce, sealed, AEAD_AAD), SUNSCREEN);
  const bad = sealed.slice();
  bad[3] ^= 1;
  assert.deepEqual(aeadOpen(AEAD_KEY, nonce, bad, AEAD_AAD), null);
  assert.deepEqual(aeadOpen(AEAD_KEY, nonce, sealed, new Uint8Array(0)), null);
  assert.deepEqual(aeadOpen(AEAD_KEY, nonce, sealed.subarray(0, 10), AEAD_AAD), null);
});

Deno.test("xaeadSeal()/xaeadOpen() match draft-irtf-cfrg-xchacha-03 A.3.1", () => {
  const nonce = fromHex("404142434445464748494a4b4c4d4e4f5051525354555657");
  const sealed = xaeadSeal(AEAD_KEY, nonce, SUNSCREEN, AEAD_AAD);
  assert.deepEqual(
    toHex(sealed),
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e" +
      "39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565" +
      "d3fff921f9664c97637da9768812f615c68b13b52e" + "c0875924c1c7987947deafd8780acf49",
  );
  assert.deepEqual(xaeadOpen(AEAD_KEY, nonce, sealed, AEAD_AAD), SUNSCREEN);
  const bad = sealed.slice();
  bad[sealed.length - 1] ^= 0x80;
  assert.deepEqual(xaeadOpen(AEAD_KEY, nonce, bad, AEAD_AAD), null);
});

Deno.test("PacketAead (libcrypto) agrees with libsodium on WireGuard nonces, in and out of place", () => {
  using aead = new PacketAead(2);
  const mem = new Uint8Array(4096);
  const a = aead.bind(mem.subarray(0, 2048));
  const b = aead.bind(mem.subarray(2048 + 16)); // an offset view: its address counts
  const key = randomBytes(32);
  aead.setKey(1, key);
  for (
    const [len, counter] of [[0, 0], [1, 1], [15, 2 ** 32 - 1], [1400, 2 ** 32], [
      2000,
      2 ** 52 + 3,
    ]]
  ) {
    const pt = randomBytes(len);
    mem.set(pt, 0);
    aead.seal(1, counter, a, len, b);
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(4, BigInt(counter), true);
    const want = aeadSeal(key, nonce, pt, new Uint8Array(0));
    assert.deepEqual(toHex(mem.subarray(2064, 2064 + len + 16)), toHex(want), `len ${len}`);
    mem.fill(0, 0, 2048);
    assert.ok(aead.open(1, counter, b, len + 16, a), `open len ${len}`);
    assert.deepEqual(toHex(mem.subarray(0, len)), toHex(pt));
    assert.ok(!aead.open(1, counter + 1, b, len + 16, a), "wrong counter must not open");
    assert.ok(!aead.open(0, counter, b, len + 16, a), "wrong key must not open");
    // In place: seal and open within one buffer.
    mem.set(pt, 0);
    aead.seal(1, counter, a, len, a);
    assert.deepEqual(toHex(mem.subarray(0, len + 16)), toHex(want));
    assert.ok(aead.open(1, counter, a, len + 16, a));
    assert.deepEqual(toHex(mem.subarray(0, len)), toHex(pt));
  }
  assert.ok(!aead.open(1, 0, a, 15, b), "shorter than a tag");
  // At an offset inside the destination (GSO: sealed datagrams back to back) and back.
  const pt = randomBytes(100);
  mem.set(pt, 0);
  aead.seal(1, 7, a, 100, b, 300);
  const nonce = new Uint8Array(12);
  nonce[4] = 7;
  assert.equal(
    toHex(mem.subarray(2064 + 300, 2064 + 300 + 116)),
    toHex(aeadSeal(key, nonce, pt, new Uint8Array(0))),
  );
  mem.fill(0, 0, 2048);
  assert.ok(aead.open(1, 7, b, 116, a, 300));
  assert.equal(toHex(mem.subarray(0, 100)), toHex(pt));
});

Deno.test("blake2s() matches RFC 7693 Appendix B and python3's hashlib", () => {
  assert.deepEqual(
    toHex(blake2s(enc("abc"))),
    "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
  );
  const plain: Record<number, string> = {
    0: "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9",
    64: "56f34e8b96557e90c1f24b52d0c89d51086acf1b00f634cf1dde9233b8eaaa3e",
    65: "1b53ee94aaf34e4b159d48de352c7f0661d0a40edff95a0b1639b4090e974472",
    200: "6d244e1a06ce4ef578dd0f63aff0936706735119ca9c8d22d86c801414ab9741",
  };
  for (const [n, want] of Object.entries(plain)) {
    assert.deepEqual(toHex(blake2s(seq(+n))), want, `n=${n}`);
  }
  // Split updates give the same digest as one.
  const h = new Blake2s(32);
  h.update(seq(200).subarray(0, 7)).update(seq(200).subarray(7, 64)).update(seq(200).subarray(64));
  assert.deepEqual(toHex(h.digest()), plain[200]);
  assert.deepEqual(toHex(blake2s(seq(200).subarray(0, 100), seq(200).subarray(100))), plain[200]);
});

Deno.test("keyed BLAKE2s matches the reference KAT (blake2s-kat.txt) and python3", () => {
  const key = seq(32);
  // blake2s-kat.txt: key 00..1f, input 00..n-1, 32-byte digests.
  const kat: Record<number, string> = {
    0: "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49",
    1: "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1",
    63: "c65382513f07460da39833cb666c5ed82e61b9e998f4b0c4287cee56c3cc9bcd",
    64: "8975b0577fd35566d750b362b0897a26c399136df07bababbde6203ff2954ed4",
    65: "21fe0ceb0052be7fb0f004187cacd7de67fa6eb0938d927677f2398c132317a8",
  };
  for (const [n, want] of Object.entries(kat)) {
    assert.deepEqual(toHex(new Blake2s(32, key).update(seq(+n)).digest()), want, `n=${n}`);
  }
  // 16-byte digests (MAC1/MAC2), python3 hashlib.blake2s(..., key=..., digest_size=16).
  const mac: Record<number, string> = {
    0: "9536f9b267655743dee97b8a670f9f53",
    3: "1e2a79436a7796a3e9826bfedf07659f",
    64: "f1efa90d2547036841ecd3627fafbc36",
    200: "42a6f8ff590af21b512e9e088257aa34",
  };
  for (const [n, want] of Object.entries(mac)) {
    assert.deepEqual(toHex(mac16(key, seq(+n))), want, `n=${n}`);
  }
});

Deno.test("hmac() is HMAC-BLAKE2s (python3 hmac.new(key, msg, hashlib.blake2s))", () => {
  const key = seq(32);
  assert.deepEqual(
    toHex(hmac(key, seq(0))),
    "e2641d24dfa8dd89e8cb77f1cdc77d8c006e5bebdfc4d6a3a3a6f8d5b7586fb0",
  );
  assert.deepEqual(
    toHex(hmac(key, seq(65))),
    "e0bf9ad5f46ae7cb59268a338f24391ad8cc125148746599da55803c3d80c2e2",
  );
  // A key longer than the 64-byte block is hashed first.
  assert.deepEqual(
    toHex(hmac(seq(100), enc("x"))),
    "7c5a4a1c1150b1eadcba56974986fd860c4aca9cd69fa0c65c9f67dadad9883a",
  );
});

Deno.test("kdf() is HKDF-Expand over HMAC-BLAKE2s with T(i) = HMAC(PRK, T(i-1) ‖ i)", () => {
  const key = seq(32);
  const input = enc("input key material");
  const prk = hmac(key, input);
  const t1 = hmac(prk, Uint8Array.of(1));
  const t2 = hmac(prk, t1, Uint8Array.of(2));
  const t3 = hmac(prk, t2, Uint8Array.of(3));
  const [a, b, c] = kdf(3, key, input);
  assert.deepEqual([toHex(a), toHex(b), toHex(c)], [toHex(t1), toHex(t2), toHex(t3)]);
  assert.deepEqual(kdf(1, key, input).map(toHex), [toHex(t1)]);
  // python3: prk = hmac.new(key, input, blake2s).digest(); hmac.new(prk, b"\x01", blake2s)
  assert.deepEqual(
    [toHex(t1), toHex(t2), toHex(t3)],
    [
      "93e2a65883e34ac95485f5d0aa4b09163a4e944dab8cf9406d3a138e362851c6",
      "dd6fae42afdb2a41170f44dc5b885ec4cfd17c8dd324d38b390c548630dd0a83",
      "4125e0adfa9b7e736615e99dde6f3f0b64b949d8b480e82cab2e685dc286e45d",
    ],
  );
});

Deno.test("PacketAeadSodium (the benchmark's libsodium side) seals and opens like PacketAead", () => {
  using ssl = new PacketAead(1);
  using na = new PacketAeadSodium(1);
  const key = randomBytes(32);
  ssl.setKey(0, key);
  na.setKey(0, key);
  for (const len of [0, 1, 1400]) {
    const pt = randomBytes(len + 16), a = new Uint8Array(len + 16), b = new Uint8Array(len + 16);
    const s1 = ssl.bind(pt), s2 = na.bind(pt), da = ssl.bind(a), db = na.bind(b);
    ssl.seal(0, 99, s1, len, da);
    na.seal(0, 99, s2, len, db);
    assert.equal(toHex(b), toHex(a), `len ${len}`);
    const back = new Uint8Array(len + 16);
    assert.ok(na.open(0, 99, db, len + 16, na.bind(back)));
    assert.equal(toHex(back.subarray(0, len)), toHex(pt.subarray(0, len)));
    b[0] ^= 1;
    assert.ok(!na.open(0, 99, db, len + 16, na.bind(back)));
  }
});
