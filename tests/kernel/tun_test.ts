/**
 * TUN devices through ffi/tun.ts, as root inside a throwaway network namespace.
 *
 * The kernel work happens in a child (`ip netns exec <ns> deno run -A <this file> <case>`) so that
 * the device is created in the namespace, never in the machine's own one. The child prints one
 * JSON line; the test checks it and reads the device back with iproute2 as the oracle.
 */

import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, runOk, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";
// Static, so libc is opened (once per isolate, for the process's life) before any test starts:
// opened inside a test, the resource sanitizer would report the library as leaked.
import { openTun } from "../../ffi/tun.ts";

const SELF = new URL(import.meta.url).pathname;

/** An ICMP echo request 10.99.0.2 → 10.99.0.1 (id 0x4242, seq 7, 32 bytes of payload). */
async function echoRequest(): Promise<Uint8Array<ArrayBuffer>> {
  const { checksum, setHeaderChecksum } = await import("../../lib/backend/udp/packet.ts");
  const p = new Uint8Array(20 + 8 + 32);
  p.set([0x45, 0, 0, p.length, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 99, 0, 2, 10, 99, 0, 1]);
  setHeaderChecksum(p, 0);
  p.set([8, 0, 0, 0, 0x42, 0x42, 0, 7], 20);
  for (let i = 0; i < 32; i++) p[28 + i] = i;
  const c = checksum(p, 20, p.length - 20);
  p[22] = c >> 8;
  p[23] = c & 0xff;
  return p;
}

async function child(kind: string): Promise<void> {
  const tun = await import("../../ffi/tun.ts");
  const { Poller } = await import("../../ffi/udp.ts");
  const { POLLIN } = await import("../../ffi/structs.ts");
  const vnet = kind === "vnet";
  const { fd, name } = tun.openTun({ name: "fltest%d", vnetHdr: vnet });
  try {
    if (vnet) tun.tunSetOffload(fd, tun.TUN_F_CSUM | tun.TUN_F_TSO4);
    tun.setTxQueueLen(name, 1000);
    await runOk(["ip", "addr", "add", "10.99.0.1/24", "dev", name]);
    await runOk(["ip", "link", "set", name, "up"]);
    const hdr = vnet ? 10 : 0;
    const req = await echoRequest();
    const out = new Uint8Array(hdr + req.length);
    out.set(req, hdr);
    const written = tun.writeBuf(fd.fd, out);
    const poller = new Poller([fd.fd], POLLIN);
    const slots = new tun.PacketSlots(1, 2048);
    let reply: number[] | null = null;
    const deadline = Date.now() + 3000;
    while (reply === null && Date.now() < deadline) {
      if (poller.poll(200) <= 0) continue;
      const n = slots.read(fd.fd, 0);
      if (n <= 0) continue;
      const p = slots.bufs[0].subarray(hdr, n);
      if (p[9] === 1 && p[20] === 0) reply = [...p]; // ICMP echo reply (skip IPv6/igmp noise)
    }
    console.log(JSON.stringify({ name, written, reply, qlen: tun.getTxQueueLen(name) }));
  } finally {
    fd.close();
  }
}

async function inNamespace(kind: string): Promise<{
  ns: string;
  result: { name: string; written: number; reply: number[] | null; qlen: number };
}> {
  const ns = `${uniqueTag()}-tun`;
  await createNamespace(ns);
  try {
    const r = await run(["ip", "netns", "exec", ns, Deno.execPath(), "run", "-A", SELF, kind]);
    assert.equal(r.code, 0, r.stderr);
    return { ns, result: JSON.parse(r.stdout.trim().split("\n").at(-1)!) };
  } finally {
    deleteNamespace(ns);
  }
}

if (import.meta.main) {
  await child(Deno.args[0] ?? "plain");
} else {
  for (const kind of ["plain", "vnet"]) {
    Deno.test(
      asRoot(`a TUN device (${kind}) carries an ICMP echo both ways: the kernel answers`),
      async () => {
        const { result } = await inNamespace(kind);
        assert.match(result.name, /^fltest\d+$/);
        assert.equal(result.written, 60 + (kind === "vnet" ? 10 : 0));
        assert.ok(result.reply, "no echo reply read back from the TUN");
        const p = result.reply!;
        assert.deepEqual(p.slice(12, 20), [10, 99, 0, 1, 10, 99, 0, 2], "reply addresses");
        assert.deepEqual(p.slice(24, 28), [0x42, 0x42, 0, 7], "reply id and sequence");
        assert.deepEqual(p.slice(28), Array.from({ length: 32 }, (_, i) => i), "payload echoed");
        assert.equal(result.qlen, 1000);
      },
    );
  }

  Deno.test(asRoot("openTun() refuses a name that is too long with a readable error"), () => {
    assert.throws(() => openTun({ name: "x".repeat(20) }), /Interface name too long/);
  });

  Deno.test(asRoot("TUNSETIFF errors carry the errno name"), async () => {
    const ns = `${uniqueTag()}-tun`;
    await createNamespace(ns);
    try {
      // Two non-multi-queue opens of the same name: the second gets EBUSY.
      const code = `
        import { openTun } from "${new URL("../../ffi/tun.ts", import.meta.url).href}";
        const a = openTun({ name: "fldup0" });
        try { openTun({ name: "fldup0" }); console.log("no error"); }
        catch (e) { console.log(e.code + " | " + e.message); }
        a.fd.close();`;
      const r = await run(["ip", "netns", "exec", ns, Deno.execPath(), "eval", code]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout.trim(),
        /^EBUSY \| ioctl\(TUNSETIFF\): EBUSY \(Device or resource busy\): fldup0$/,
      );
    } finally {
      deleteNamespace(ns);
    }
  });
}
