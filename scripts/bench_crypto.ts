/**
 * The transport AEAD's library comparison that picked libcrypto for the data path:
 * ChaCha20-Poly1305 seal and open of 1400-byte packets (and 64 and 9000 bytes) through FFI with
 * preallocated buffers and WireGuard's nonces, libcrypto (four EVP calls per packet) against
 * libsodium (one call). Best of `--rounds` rounds of `--packets` packets each; no privileges.
 *
 * Usage: deno run -A scripts/bench_crypto.ts [--rounds 6] [--packets 100000]
 */

import { parseArgs } from "node:util";
import { PacketAead, PacketAeadSodium, randomBytes, type TransportAead } from "../ffi/crypto.ts";

const args = parseArgs({
  options: {
    rounds: { type: "string", default: "6" },
    packets: { type: "string", default: "100000" },
  },
});
const ROUNDS = Number(args.values.rounds);
const PACKETS = Number(args.values.packets);

function setup(a: TransportAead, size: number) {
  const pt = new Uint8Array(size + 16);
  pt.set(randomBytes(size));
  const ct = new Uint8Array(size + 16);
  const out = new Uint8Array(size + 16);
  a.setKey(0, randomBytes(32));
  return { src: a.bind(pt), ct: a.bind(ct), out: a.bind(out) };
}

function rate(fn: (i: number) => void, size: number): number {
  const t0 = performance.now();
  for (let i = 0; i < PACKETS; i++) fn(i);
  return PACKETS * size / ((performance.now() - t0) / 1000);
}

const libs: [string, () => TransportAead][] = [
  ["libcrypto (OpenSSL 3, EVP)", () => new PacketAead(1)],
  ["libsodium", () => new PacketAeadSodium(1)],
];
const rows: string[] = [];
for (const size of [64, 1400, 9000]) {
  for (const [name, make] of libs) {
    using a = make();
    const b = setup(a, size);
    let seal = 0, open = 0;
    for (let r = 0; r < ROUNDS; r++) {
      seal = Math.max(seal, rate((i) => a.seal(0, i, b.src, size, b.ct), size));
      a.seal(0, 7, b.src, size, b.ct);
      open = Math.max(
        open,
        rate(() => {
          if (!a.open(0, 7, b.ct, size + 16, b.out)) throw new Error("open failed");
        }, size),
      );
    }
    rows.push(`| ${size} | ${name} | ${(seal / 1e6).toFixed(0)} | ${(open / 1e6).toFixed(0)} |`);
  }
}
console.log(
  `ChaCha20-Poly1305 through FFI, ${new Date().toISOString()}, best of ${ROUNDS} × ${PACKETS} ` +
    `packets, load ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}`,
);
console.log("| bytes | library | seal MB/s | open MB/s |\n|---|---|---|---|\n" + rows.join("\n"));
