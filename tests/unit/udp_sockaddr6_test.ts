/** The `sockaddr_in6` codec of ffi/udp.ts against the C layout (linux/in6.h, x86-64). */

import assert from "node:assert/strict";
import { decodeSockaddrIn6, encodeSockaddrIn6, SOCKADDR_IN6 } from "../../ffi/udp.ts";
import { IP } from "../../ffi/ip.ts";

Deno.test("encodeSockaddrIn6 lays out family, port, flow info, address and scope as C does", () => {
  const addr = IP.mustParse("fc00::1:2").bytes;
  const b = encodeSockaddrIn6(addr, 51821, 7);
  assert.equal(b.length, SOCKADDR_IN6.size);
  assert.equal(SOCKADDR_IN6.size, 28);
  assert.deepEqual([...b.subarray(0, 8)], [10, 0, 0xca, 0x6d, 0, 0, 0, 0], "AF_INET6 LE, port BE");
  assert.deepEqual(b.subarray(8, 24), addr);
  assert.deepEqual([...b.subarray(24, 28)], [7, 0, 0, 0], "scope id host order");
  assert.deepEqual(decodeSockaddrIn6(b), { addr, port: 51821 });
});

Deno.test("encodeSockaddrIn6 refuses an address that is not 16 bytes", () => {
  assert.throws(
    () => encodeSockaddrIn6(new Uint8Array(4), 1),
    /IPv6 address: 4 bytes \(expected 16\)/,
  );
});
