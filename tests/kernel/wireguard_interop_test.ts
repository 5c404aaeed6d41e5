/**
 * Interop of the TypeScript WireGuard core with a real implementation, before any data path,
 * over each address family: Debian's `wireguard-go`, configured with `wg`, in one namespace; our
 * {@link Device} on a plain UDP socket of ffi/udp.ts in the other (this file run as a child).
 * The underlay and the tunnel are of one family (IPv4: 192.168.77.0/24 carrying 10.99.0.0/24;
 * IPv6: fd77::/64 carrying fc99::/64). Our side starts the handshake with a staged ICMP (ICMPv6)
 * echo request; it must get wireguard-go's response, decrypt the echo reply its kernel sends,
 * and answer wireguard-go's own pings through the tunnel. With a mismatched PSK no session
 * forms, and the refused response is counted.
 *
 * wireguard-go's UAPI socket lives in /var/run/wireguard, which every network namespace shares:
 * it runs inside `unshare -m` with a tmpfs over /run, so nothing is left on the machine.
 */

import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, runOk, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";

const SELF = new URL(import.meta.url).pathname;
const PORT = 51820;

/** One family's addresses: underlay (`wg`: wireguard-go's side, `ts`: ours) and tunnel. */
interface Family {
  readonly v: 4 | 6;
  readonly wgAddr: string;
  readonly tsAddr: string;
  readonly underlayPrefix: number;
  readonly wgInner: string;
  readonly tsInner: string;
  readonly innerPrefix: number;
}

const FAMILIES: Record<4 | 6, Family> = {
  4: {
    v: 4,
    wgAddr: "192.168.77.1",
    tsAddr: "192.168.77.2",
    underlayPrefix: 24,
    wgInner: "10.99.0.1",
    tsInner: "10.99.0.2",
    innerPrefix: 24,
  },
  6: {
    v: 6,
    wgAddr: "fd77::1",
    tsAddr: "fd77::2",
    underlayPrefix: 64,
    wgInner: "fc99::1",
    tsInner: "fc99::2",
    innerPrefix: 64,
  },
};

const hostPort = (f: Family, addr: string) => f.v === 6 ? `[${addr}]:${PORT}` : `${addr}:${PORT}`;

interface ChildSpec {
  family: 4 | 6;
  priv: string; // base64
  peerPub: string;
  psk?: string;
  seconds: number;
}

interface ChildResult {
  handshake: boolean;
  echoReplies: number;
  echoRequestsAnswered: number;
  /** The peer's endpoint as our Device learnt it. */
  endpoint: string;
  drops: Record<string, number>;
}

/** The one's-complement sum of `len` bytes at `b[off..]`, plus `seed`. */
function sum16(b: Uint8Array, off: number, len: number, seed = 0): number {
  let s = seed;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/**
 * An echo request or reply from `src` to `dst` (4 or 16 bytes) into `buf`: ICMP over IPv4
 * (types 8/0, header checksum) or ICMPv6 (128/129, checksum over the pseudo-header, RFC 4443
 * §2.3). Returns the packet's length.
 */
function icmpEcho(
  buf: Uint8Array,
  src: Uint8Array,
  dst: Uint8Array,
  request: boolean,
  id: number,
  seq: number,
  payload: Uint8Array,
): number {
  const v = new DataView(buf.buffer, buf.byteOffset);
  const icmpLen = 8 + payload.length;
  if (src.length === 4) {
    const n = 20 + icmpLen;
    buf.fill(0, 0, n);
    buf[0] = 0x45;
    v.setUint16(2, n);
    buf[8] = 64;
    buf[9] = 1;
    buf.set(src, 12);
    buf.set(dst, 16);
    v.setUint16(10, ~sum16(buf, 0, 20) & 0xffff);
    buf[20] = request ? 8 : 0;
    v.setUint16(24, id);
    v.setUint16(26, seq);
    buf.set(payload, 28);
    v.setUint16(22, ~sum16(buf, 20, icmpLen) & 0xffff);
    return n;
  }
  buf.fill(0, 0, 40 + icmpLen);
  buf[0] = 0x60;
  v.setUint16(4, icmpLen);
  buf[6] = 58;
  buf[7] = 64;
  buf.set(src, 8);
  buf.set(dst, 24);
  buf[40] = request ? 128 : 129;
  v.setUint16(44, id);
  v.setUint16(46, seq);
  buf.set(payload, 48);
  const pseudo = sum16(buf, 8, 32, icmpLen + 58); // addresses, upper-layer length, next header
  v.setUint16(42, ~sum16(buf, 40, icmpLen, pseudo) & 0xffff);
  return 40 + icmpLen;
}

/** The echo in an opened packet: where its ICMP header is, whether a request; null if none. */
function echoOf(p: Uint8Array): { at: number; request: boolean } | null {
  if ((p[0] >> 4) === 4 && p[9] === 1 && (p[20] === 8 || p[20] === 0)) {
    return { at: 20, request: p[20] === 8 };
  }
  if ((p[0] >> 4) === 6 && p[6] === 58 && (p[40] === 128 || p[40] === 129)) {
    return { at: 40, request: p[40] === 128 };
  }
  return null;
}

async function child(spec: ChildSpec): Promise<void> {
  const { PacketAead, randomBytes } = await import("../../ffi/crypto.ts");
  const udp = await import("../../ffi/udp.ts");
  const { POLLIN } = await import("../../ffi/structs.ts");
  const { Device, DROP_BAD_MAC, DROP_REPLAY, DROP_HANDSHAKE, DROP_NOT_ALLOWED } = await import(
    "../../lib/backend/wireguard/device.ts"
  );
  const { parseKey } = await import("../../lib/backend/wireguard/keys.ts");
  const { systemClock } = await import("../../lib/backend/wireguard/timers.ts");
  const { IP } = await import("../../lib/ip.ts");

  const f = FAMILIES[spec.family];
  const v6 = f.v === 6;
  const sock = udp.udpSocket({ ipv6: v6 });
  if (v6) udp.bind6(sock, new Uint8Array(16), PORT); // [::]:51820 inside this test's namespace
  else udp.bind(sock, 0, PORT);
  // The Device's forms: IPv4 as a host-order u32 with ip6 null, IPv6 as 16 bytes with ip 0.
  const send = (b: Uint8Array, ip: number, port: number, ip6: Uint8Array | null) =>
    ip6 === null
      ? udp.sendto(sock, new Uint8Array(b), ip, port)
      : udp.sendto6(sock, new Uint8Array(b), ip6, port);
  const aead = new PacketAead(64);
  const dev = new Device(
    parseKey(spec.priv, "key"),
    { clock: systemClock, random: randomBytes, send },
    aead,
  );
  const wgIp = IP.mustParse(f.wgAddr);
  const us = IP.mustParse(f.tsInner).bytes, them = IP.mustParse(f.wgInner);
  dev.setPeer({
    publicKey: parseKey(spec.peerPub, "peer key"),
    presharedKey: spec.psk ? parseKey(spec.psk, "PSK") : undefined,
    endpoint: v6 ? { ip: 0, port: PORT, ip6: wgIp.bytes } : { ip: wgIp.toU32(), port: PORT },
    allowedIPs: [
      v6 ? { net: 0, prefix: 128, net6: them.bytes } : { net: them.toU32(), prefix: 32 },
    ],
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
    const r = v6
      ? dev.sealTransport6(plainId, plain, n, dgram, dgramPayload)
      : dev.sealTransport(them.toU32(), plainId, plain, n, dgram, dgramPayload);
    if (r > 0) {
      const ep = dev.lastPeer!.endpoint!;
      send(dgram.subarray(0, r), ep.ip, ep.port, ep.ip6);
    }
  };
  const token = new TextEncoder().encode(`flannel-wg-interop${f.v}`);
  let seq = 0;
  const ping = () => sendPacket(icmpEcho(plain, us, them.bytes, true, 0x4242, ++seq, token));
  ping(); // staged: starts the handshake
  const poller = new udp.Poller([sock.fd], POLLIN);
  const rx = new Uint8Array(65536);
  const end = performance.now() + spec.seconds * 1000;
  let lastPing = performance.now();
  while (performance.now() < end) {
    poller.poll(50);
    for (;;) {
      let d: { length: number; ip: number; ip6: Uint8Array | null; port: number } | null;
      if (v6) {
        const r = udp.recvfrom6(sock, rx);
        d = r && { length: r.length, ip: 0, ip6: r.addr, port: r.port };
      } else {
        const r = udp.recvfrom(sock, rx);
        d = r && { length: r.length, ip: r.ip, ip6: null, port: r.port };
      }
      if (d === null) break;
      if (rx[0] !== 4) {
        const r = dev.handshakeMessage(rx.slice(0, d.length), d.ip, d.port, d.ip6);
        if (r < 0) count(r);
        continue;
      }
      dgram.set(rx.subarray(0, d.length));
      const r = dev.openTransport(
        dgram,
        d.length,
        d.ip,
        d.port,
        dgramPayload,
        plainId,
        plain,
        0,
        d.ip6,
      );
      if (r < 0) {
        count(r);
        continue;
      }
      const echo = r === 0 ? null : echoOf(plain); // 0: a keepalive
      if (echo === null) continue;
      const v = new DataView(plain.buffer);
      const id = v.getUint16(echo.at + 4), s = v.getUint16(echo.at + 6);
      if (!echo.request && id === 0x4242) result.echoReplies++;
      if (echo.request) {
        // Answer wireguard-go's kernel: same id, sequence and payload.
        const payload = plain.slice(echo.at + 8, r);
        sendPacket(icmpEcho(plain, us, them.bytes, false, id, s, payload));
        result.echoRequestsAnswered++;
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
  result.endpoint = ep.ip6 === null
    ? `${IP.fromU32(ep.ip)}:${ep.port}`
    : `[${IP.fromBytes(ep.ip6)}]:${ep.port}`;
  console.log(JSON.stringify(result));
  dev.close();
  aead[Symbol.dispose]();
  sock.close();
}

/** wireguard-go as `wg0` with our key as its one peer, inside a mount namespace of its own. */
function wgScript(f: Family): string {
  const dash6 = f.v === 6 ? "-6 " : "";
  return `
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/wireguard
chmod 700 /run/wireguard
wireguard-go -f wg0 >/run/wg.log 2>&1 &
for i in $(seq 100); do [ -S /run/wireguard/wg0.sock ] && break; sleep 0.05; done
printf '%s' "$WG_PRIV" > /run/priv
set -- wg set wg0 private-key /run/priv listen-port ${PORT} peer "$TS_PUB" endpoint ${
    hostPort(f, f.tsAddr)
  } allowed-ips ${f.tsInner}/${f.v === 6 ? 128 : 32}
if [ -n "$WG_PSK" ]; then printf '%s' "$WG_PSK" > /run/psk; set -- "$@" preshared-key /run/psk; fi
"$@"
ip ${dash6}addr add ${f.wgInner}/${f.innerPrefix} dev wg0${f.v === 6 ? " nodad" : ""}
ip link set wg0 up
echo READY
wait
`;
}

async function genkey(): Promise<{ priv: string; pub: string }> {
  const priv = (await runOk(["wg", "genkey"])).trim();
  const pub = (await runOk(["wg", "pubkey"], { stdin: priv })).trim();
  return { priv, pub };
}

/** Two namespaces on a veth pair of family `f`, wireguard-go running in one; then `fn`. */
async function withPair(
  f: Family,
  wgPsk: string | undefined,
  fn: (
    ctx: { wgNs: string; tsNs: string; wgPid: number; ts: { priv: string }; wg: { pub: string } },
  ) => Promise<void>,
): Promise<void> {
  const tag = uniqueTag();
  const wgNs = `${tag}-wg`, tsNs = `${tag}-ts`;
  const wgProc: Deno.ChildProcess[] = [];
  try {
    await createNamespace(wgNs);
    await createNamespace(tsNs);
    const a = `${tag}a`, b = `${tag}b`;
    await runOk(["ip", "link", "add", a, "netns", wgNs, "type", "veth", "peer", b, "netns", tsNs]);
    const nodad = f.v === 6 ? ["nodad"] : [];
    for (const [ns, dev, addr] of [[wgNs, a, f.wgAddr], [tsNs, b, f.tsAddr]]) {
      await runOk([
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        `${addr}/${f.underlayPrefix}`,
        "dev",
        dev,
        ...nodad,
      ]);
      await runOk(["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    const wg = await genkey(), ts = await genkey();
    const p = new Deno.Command("ip", {
      args: ["netns", "exec", wgNs, "unshare", "-m", "sh", "-c", wgScript(f)],
      env: { WG_PRIV: wg.priv, TS_PUB: ts.pub, WG_PSK: wgPsk ?? "" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    wgProc.push(p);
    const reader = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      reader.read(),
      new Promise<never>((_, rej) =>
        timer = setTimeout(() => rej(new Error("wireguard-go did not start")), 15_000)
      ),
    ]).finally(() => clearTimeout(timer));
    assert.match(first.value ?? "", /READY/);
    reader.releaseLock();
    const pids = (await runOk(["ip", "netns", "pids", wgNs])).trim().split("\n").map(Number);
    let wgPid = 0;
    for (const pid of pids) {
      const comm = await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "");
      if (comm.trim() === "wireguard-go") wgPid = pid;
    }
    assert.ok(wgPid > 0, "wireguard-go runs");
    await fn({ wgNs, tsNs, wgPid, ts: { priv: ts.priv }, wg: { pub: wg.pub } });
  } finally {
    deleteNamespace(wgNs);
    deleteNamespace(tsNs);
    for (const p of wgProc) {
      await p.stdout.cancel().catch(() => {});
      await p.stderr.cancel().catch(() => {});
      await p.status;
    }
  }
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

async function childResult(c: Deno.ChildProcess): Promise<{ res: ChildResult; text: string }> {
  const out = await c.output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return { res: JSON.parse(text.trim().split("\n").pop()!) as ChildResult, text };
}

if (import.meta.main && Deno.args[0] === "child") {
  await child(JSON.parse(Deno.args[1]));
} else {
  const haveWg = (await run(["sh", "-c", "command -v wireguard-go && command -v wg"])).code === 0;
  // Root, and Debian's wireguard-go and wireguard-tools.
  const needs = (name: string) => {
    const o = asRoot(name);
    return haveWg ? o : { name: `${o.name} [skipped: needs wireguard-go and wg]`, ignore: true };
  };
  for (const f of [FAMILIES[4], FAMILIES[6]]) {
    const over = `IPv${f.v}`;
    Deno.test({
      ...needs(
        `${over}: wireguard-go and our Device complete a handshake and exchange pings both ways`,
      ),
      async fn() {
        await withPair(f, undefined, async ({ wgNs, tsNs, wgPid, ts, wg }) => {
          const c = runChild(tsNs, { family: f.v, priv: ts.priv, peerPub: wg.pub, seconds: 8 });
          // While our side runs, wireguard-go's kernel pings us through the tunnel.
          await new Promise((r) => setTimeout(r, 3000));
          const ping = await run(
            ["ip", "netns", "exec", wgNs, "ping", "-c", "3", "-i", "0.3", "-W", "2", f.tsInner],
          );
          const { res, text } = await childResult(c);
          assert.ok(res.handshake, `no session: ${text}`);
          assert.ok(res.echoReplies >= 1, `no echo reply decrypted: ${text}`);
          assert.equal(ping.code, 0, `wireguard-go side ping failed: ${ping.stdout}`);
          assert.ok(res.echoRequestsAnswered >= 3, text);
          assert.deepEqual(res.drops, {});
          assert.equal(res.endpoint, hostPort(f, f.wgAddr));
          const dump = await runOk(
            ["nsenter", "-t", String(wgPid), "-m", "-n", "wg", "show", "wg0", "dump"],
          );
          const peerLine = dump.trim().split("\n")[1].split("\t");
          assert.equal(peerLine[2], hostPort(f, f.tsAddr), `wireguard-go's endpoint: ${dump}`);
          assert.ok(Number(peerLine[4]) > 0, `wireguard-go saw a handshake: ${dump}`);
          assert.ok(
            Number(peerLine[5]) > 0 && Number(peerLine[6]) > 0,
            `transfer both ways: ${dump}`,
          );
        });
      },
    });

    Deno.test({
      ...needs(`${over}: wireguard-go and our Device with different PSKs form no session`),
      async fn() {
        const psk1 = (await runOk(["wg", "genpsk"])).trim();
        const psk2 = (await runOk(["wg", "genpsk"])).trim();
        await withPair(f, psk1, async ({ tsNs, ts, wg }) => {
          const c = runChild(
            tsNs,
            { family: f.v, priv: ts.priv, peerPub: wg.pub, psk: psk2, seconds: 4 },
          );
          const { res, text } = await childResult(c);
          assert.equal(res.handshake, false);
          assert.equal(res.echoReplies, 0);
          assert.ok(
            (res.drops.handshake ?? 0) >= 1,
            `the response is refused and counted: ${text}`,
          );
        });
      },
    });
  }
}
