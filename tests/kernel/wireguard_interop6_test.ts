/**
 * IPv6 interop of the WireGuard core with a real implementation: Debian's `wireguard-go`,
 * configured with `wg`, in one namespace; our IPv6 {@link Device} (family 6) on an `AF_INET6`
 * socket of ffi/udp.ts in the other (this file run as a child). The underlay is IPv6 only
 * (fd77::/64 on a veth pair), the tunnel carries IPv6 (fc99::/64): our side starts the
 * handshake with a staged ICMPv6 echo request, must decrypt the echo reply wireguard-go's
 * kernel sends, and answer wireguard-go's own `ping -6` through the tunnel.
 *
 * wireguard-go's UAPI socket lives in /var/run/wireguard, which every network namespace shares:
 * it runs inside `unshare -m` with a tmpfs over /run, so nothing is left on the machine.
 */

import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, runOk, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";

const SELF = new URL(import.meta.url).pathname;
const WG_ADDR = "fd77::1", TS_ADDR = "fd77::2";
const WG_INNER = "fc99::1", TS_INNER = "fc99::2";
const PORT = 51821;

interface ChildSpec {
  priv: string;
  peerPub: string;
  seconds: number;
}

interface ChildResult {
  handshake: boolean;
  echoReplies: number;
  echoRequestsAnswered: number;
  endpoint: string;
  drops: Record<string, number>;
}

/** The ICMPv6 checksum (RFC 4443 §2.3: over the IPv6 pseudo-header and the message). */
function icmp6Checksum(b: Uint8Array, len: number): number {
  let s = 0;
  for (let i = 8; i < 40; i += 2) s += (b[i] << 8) | b[i + 1]; // source and destination
  s += len; // upper-layer length (< 65536)
  s += 58; // next header
  for (let i = 0; i < len; i += 2) s += (b[40 + i] << 8) | (i + 1 < len ? b[40 + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An ICMPv6 echo (128 request / 129 reply) from `src` to `dst` into `buf`; its length. */
function icmp6Echo(
  buf: Uint8Array,
  src: Uint8Array,
  dst: Uint8Array,
  type: number,
  id: number,
  seq: number,
  payload: Uint8Array,
): number {
  const icmpLen = 8 + payload.length;
  buf.fill(0, 0, 40 + icmpLen);
  const v = new DataView(buf.buffer, buf.byteOffset);
  buf[0] = 0x60;
  v.setUint16(4, icmpLen);
  buf[6] = 58;
  buf[7] = 64;
  buf.set(src, 8);
  buf.set(dst, 24);
  buf[40] = type;
  v.setUint16(44, id);
  v.setUint16(46, seq);
  buf.set(payload, 48);
  v.setUint16(42, icmp6Checksum(buf, icmpLen));
  return 40 + icmpLen;
}

async function child(spec: ChildSpec): Promise<void> {
  const { PacketAead, randomBytes } = await import("../../ffi/crypto.ts");
  const { udpSocket, bind6, sendto6, recvfrom6, Poller } = await import("../../ffi/udp.ts");
  const { POLLIN } = await import("../../ffi/structs.ts");
  const { Device, DROP_BAD_MAC, DROP_REPLAY, DROP_HANDSHAKE, DROP_NOT_ALLOWED } = await import(
    "../../lib/backend/wireguard/device.ts"
  );
  const { parseKey } = await import("../../lib/backend/wireguard/keys.ts");
  const { systemClock } = await import("../../lib/backend/wireguard/timers.ts");
  const { IP } = await import("../../lib/ip.ts");

  const sock = udpSocket({ ipv6: true });
  bind6(sock, new Uint8Array(16), PORT); // [::]:51821 inside this test's namespace
  const aead = new PacketAead(64);
  const dev = new Device(
    parseKey(spec.priv, "key"),
    {
      clock: systemClock,
      random: randomBytes,
      send: (b, _ip, port, ip6) => sendto6(sock, new Uint8Array(b), ip6!, port),
    },
    aead,
  );
  const us = IP.mustParse(TS_INNER).bytes, them = IP.mustParse(WG_INNER).bytes;
  dev.setPeer({
    publicKey: parseKey(spec.peerPub, "peer key"),
    endpoint: { ip: 0, port: PORT, ip6: IP.mustParse(WG_ADDR).bytes },
    allowedIPs: [{ net: 0, prefix: 128, net6: them }],
    persistentKeepalive: 0,
  });
  const plain = new Uint8Array(2048), dgram = new Uint8Array(2048 + 32);
  const plainId = aead.bind(plain), dgramPayload = aead.bind(dgram.subarray(16));
  const result: ChildResult = {
    handshake: false,
    echoReplies: 0,
    echoRequestsAnswered: 0,
    endpoint: "",
    drops: {},
  };
  const names: Record<number, string> = {
    [DROP_BAD_MAC]: "bad_mac",
    [DROP_REPLAY]: "replay",
    [DROP_HANDSHAKE]: "handshake",
    [DROP_NOT_ALLOWED]: "not_allowed",
  };
  const count = (r: number) => {
    const k = names[r] ?? `r${r}`;
    result.drops[k] = (result.drops[k] ?? 0) + 1;
  };
  const sendPacket = (n: number) => {
    const r = dev.sealTransport6(plainId, plain, n, dgram, dgramPayload);
    if (r > 0) {
      const ep = dev.lastPeer!.endpoint!;
      sendto6(sock, dgram.slice(0, r), ep.ip6!, ep.port);
    }
  };
  const token = new TextEncoder().encode("flannel-wg-interop6");
  let seq = 0;
  const ping = () => sendPacket(icmp6Echo(plain, us, them, 128, 0x4242, ++seq, token));
  ping(); // staged: starts the handshake
  const poller = new Poller([sock.fd], POLLIN);
  const rx = new Uint8Array(65536);
  const end = performance.now() + spec.seconds * 1000;
  let lastPing = performance.now();
  while (performance.now() < end) {
    poller.poll(50);
    for (;;) {
      const d = recvfrom6(sock, rx);
      if (d === null) break;
      if (rx[0] === 4) {
        dgram.set(rx.subarray(0, d.length));
        const r = dev.openTransport(
          dgram,
          d.length,
          0,
          d.port,
          dgramPayload,
          plainId,
          plain,
          0,
          d.addr,
        );
        if (r < 0) {
          count(r);
          continue;
        }
        if (r === 0) continue; // keepalive
        if (plain[6] === 58 && plain[40] === 129 && plain[44] === 0x42) result.echoReplies++;
        if (plain[6] === 58 && plain[40] === 128) {
          const v = new DataView(plain.buffer);
          const id = v.getUint16(44), s = v.getUint16(46);
          const payload = plain.slice(48, r);
          sendPacket(icmp6Echo(plain, us, them, 129, id, s, payload));
          result.echoRequestsAnswered++;
        }
      } else {
        const r = dev.handshakeMessage(rx.slice(0, d.length), 0, d.port, d.addr);
        if (r < 0) count(r);
      }
    }
    dev.tick();
    const peer = dev.peers()[0];
    result.handshake = dev.keypairs(peer).current !== null;
    if (result.handshake && performance.now() - lastPing > 300 && result.echoReplies < 3) {
      lastPing = performance.now();
      ping();
    }
  }
  const ep = dev.peers()[0].endpoint!;
  result.endpoint = `[${IP.fromBytes(ep.ip6!)}]:${ep.port}`;
  console.log(JSON.stringify(result));
  dev.close();
  aead[Symbol.dispose]();
  sock.close();
}

const WG_SCRIPT = `
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/wireguard
chmod 700 /run/wireguard
wireguard-go -f wg0 >/run/wg.log 2>&1 &
for i in $(seq 100); do [ -S /run/wireguard/wg0.sock ] && break; sleep 0.05; done
printf '%s' "$WG_PRIV" > /run/priv
wg set wg0 private-key /run/priv listen-port ${PORT} peer "$TS_PUB" endpoint [${TS_ADDR}]:${PORT} allowed-ips ${TS_INNER}/128
ip -6 addr add ${WG_INNER}/64 dev wg0 nodad
ip link set wg0 up
echo READY
wait
`;

async function genkey(): Promise<{ priv: string; pub: string }> {
  const priv = (await runOk(["wg", "genkey"])).trim();
  const pub = (await runOk(["wg", "pubkey"], { stdin: priv })).trim();
  return { priv, pub };
}

function runChild(tsNs: string, spec: ChildSpec): Deno.ChildProcess {
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      tsNs,
      Deno.execPath(),
      "run",
      "-A",
      SELF,
      "child",
      JSON.stringify(spec),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

if (import.meta.main && Deno.args[0] === "child") {
  await child(JSON.parse(Deno.args[1]));
} else {
  const haveWg = (await run(["sh", "-c", "command -v wireguard-go && command -v wg"])).code === 0;
  const o = asRoot(
    "IPv6: wireguard-go and our IPv6 Device handshake over [v6]:port, ping6 both ways",
  );
  Deno.test({
    ...(haveWg ? o : { name: `${o.name} [skipped: needs wireguard-go and wg]`, ignore: true }),
    async fn() {
      const tag = uniqueTag();
      const wgNs = `${tag}-wg`, tsNs = `${tag}-ts`;
      let wgProc: Deno.ChildProcess | null = null;
      try {
        await createNamespace(wgNs);
        await createNamespace(tsNs);
        await runOk([
          "ip",
          "link",
          "add",
          `${tag}a`,
          "netns",
          wgNs,
          "type",
          "veth",
          "peer",
          `${tag}b`,
          "netns",
          tsNs,
        ]);
        await runOk([
          "ip",
          "-n",
          wgNs,
          "-6",
          "addr",
          "add",
          `${WG_ADDR}/64`,
          "dev",
          `${tag}a`,
          "nodad",
        ]);
        await runOk([
          "ip",
          "-n",
          tsNs,
          "-6",
          "addr",
          "add",
          `${TS_ADDR}/64`,
          "dev",
          `${tag}b`,
          "nodad",
        ]);
        await runOk(["ip", "-n", wgNs, "link", "set", `${tag}a`, "up"]);
        await runOk(["ip", "-n", tsNs, "link", "set", `${tag}b`, "up"]);
        const wg = await genkey(), ts = await genkey();
        wgProc = new Deno.Command("ip", {
          args: ["netns", "exec", wgNs, "unshare", "-m", "sh", "-c", WG_SCRIPT],
          env: { WG_PRIV: wg.priv, TS_PUB: ts.pub },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const reader = wgProc.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const first = await Promise.race([
          reader.read(),
          new Promise<never>((_, rej) =>
            timer = setTimeout(() => rej(new Error("wireguard-go did not start")), 15_000)
          ),
        ]).finally(() => clearTimeout(timer));
        assert.match(first.value ?? "", /READY/);
        reader.releaseLock();
        const c = runChild(tsNs, { priv: ts.priv, peerPub: wg.pub, seconds: 8 });
        await new Promise((r) => setTimeout(r, 3000));
        const ping = await run([
          "ip",
          "netns",
          "exec",
          wgNs,
          "ping",
          "-6",
          "-c",
          "3",
          "-i",
          "0.3",
          "-W",
          "2",
          TS_INNER,
        ]);
        const out = await c.output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        const res = JSON.parse(text.trim().split("\n").pop()!) as ChildResult;
        assert.ok(res.handshake, `no session: ${text}`);
        assert.ok(res.echoReplies >= 1, `no ICMPv6 echo reply decrypted: ${text}`);
        assert.equal(ping.code, 0, `wireguard-go side ping6 failed: ${ping.stdout}`);
        assert.ok(res.echoRequestsAnswered >= 3, text);
        assert.deepEqual(res.drops, {});
        assert.equal(res.endpoint, `[${WG_ADDR}]:${PORT}`);
      } finally {
        deleteNamespace(wgNs);
        deleteNamespace(tsNs);
        if (wgProc !== null) {
          await wgProc.stdout.cancel().catch(() => {});
          await wgProc.stderr.cancel().catch(() => {});
          await wgProc.status;
        }
      }
    },
  });
}
