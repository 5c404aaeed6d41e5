/**
 * Interop of the TypeScript WireGuard core with a real implementation, before any data path:
 * Debian's `wireguard-go`, configured with `wg`, in one namespace; our {@link Device} on a plain
 * UDP socket in the other (this file run as a child). Our side starts the handshake with a
 * staged ICMP echo request; it must get wireguard-go's response, decrypt the echo reply its
 * kernel sends, and answer wireguard-go's own pings (`ping 10.99.0.2` from the other side).
 * With a mismatched PSK no session forms.
 *
 * wireguard-go's UAPI socket lives in /var/run/wireguard, which every network namespace shares:
 * it runs inside `unshare -m` with a tmpfs over /run, so nothing is left on the machine.
 */

import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, runOk, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";

const SELF = new URL(import.meta.url).pathname;
const WG_ADDR = "192.168.77.1", TS_ADDR = "192.168.77.2";
const PORT = 51820;

interface ChildSpec {
  priv: string; // base64
  peerPub: string;
  psk?: string;
  seconds: number;
}

interface ChildResult {
  handshake: boolean;
  echoReplies: number;
  echoRequestsAnswered: number;
  drops: Record<string, number>;
}

function ipChecksum(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An IPv4 ICMP echo (type 8 request / 0 reply) into `buf`; returns its length. */
function icmpEcho(
  buf: Uint8Array,
  src: number,
  dst: number,
  type: number,
  id: number,
  seq: number,
  payload: Uint8Array,
): number {
  const n = 28 + payload.length;
  buf.fill(0, 0, n);
  const v = new DataView(buf.buffer, buf.byteOffset);
  buf[0] = 0x45;
  v.setUint16(2, n);
  buf[8] = 64;
  buf[9] = 1;
  v.setUint32(12, src);
  v.setUint32(16, dst);
  v.setUint16(10, ipChecksum(buf, 0, 20));
  buf[20] = type;
  v.setUint16(24, id);
  v.setUint16(26, seq);
  buf.set(payload, 28);
  v.setUint16(22, ipChecksum(buf, 20, 8 + payload.length));
  return n;
}

async function child(spec: ChildSpec): Promise<void> {
  const { PacketAead, randomBytes } = await import("../../ffi/crypto.ts");
  const { udpSocket, bind, sendto, recvfrom, Poller } = await import("../../ffi/udp.ts");
  const { POLLIN } = await import("../../ffi/structs.ts");
  const { Device, DROP_BAD_MAC, DROP_REPLAY, DROP_HANDSHAKE, DROP_NOT_ALLOWED } = await import(
    "../../lib/backend/wireguard/device.ts"
  );
  const { parseKey } = await import("../../lib/backend/wireguard/keys.ts");
  const { systemClock } = await import("../../lib/backend/wireguard/timers.ts");
  const { parseIPv4 } = await import("../../lib/ip.ts");

  const sock = udpSocket();
  bind(sock, 0, PORT);
  const aead = new PacketAead(64);
  const dev = new Device(parseKey(spec.priv, "key"), {
    clock: systemClock,
    random: randomBytes,
    send: (b, ip, port) => sendto(sock, new Uint8Array(b), ip, port),
  }, aead);
  // The Device works on host-order u32 IPv4 addresses (the data path's representation).
  const wgIp = parseIPv4(WG_ADDR)!.toU32();
  const inner = { us: parseIPv4("10.99.0.2")!.toU32(), them: parseIPv4("10.99.0.1")!.toU32() };
  dev.setPeer({
    publicKey: parseKey(spec.peerPub, "peer key"),
    presharedKey: spec.psk ? parseKey(spec.psk, "PSK") : undefined,
    endpoint: { ip: wgIp, port: PORT },
    allowedIPs: [{ net: inner.them, prefix: 32 }],
    persistentKeepalive: 0,
  });
  const plain = new Uint8Array(2048), dgram = new Uint8Array(2048 + 32);
  const plainId = aead.bind(plain), dgramPayload = aead.bind(dgram.subarray(16));
  const result: ChildResult = {
    handshake: false,
    echoReplies: 0,
    echoRequestsAnswered: 0,
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
    const r = dev.sealTransport(inner.them, plainId, plain, n, dgram, dgramPayload);
    if (r > 0) {
      const ep = dev.lastPeer!.endpoint!;
      sendto(sock, dgram.slice(0, r), ep.ip, ep.port);
    }
  };
  const token = new TextEncoder().encode("flannel-wg-interop");
  let seq = 0;
  const ping = () => sendPacket(icmpEcho(plain, inner.us, inner.them, 8, 0x4242, ++seq, token));
  ping(); // staged: starts the handshake
  const poller = new Poller([sock.fd], POLLIN);
  const rx = new Uint8Array(65536);
  const end = performance.now() + spec.seconds * 1000;
  let lastPing = performance.now();
  while (performance.now() < end) {
    poller.poll(50);
    for (;;) {
      const d = recvfrom(sock, rx);
      if (d === null) break;
      if (rx[0] === 4) {
        dgram.set(rx.subarray(0, d.length));
        const r = dev.openTransport(dgram, d.length, d.ip, d.port, dgramPayload, plainId, plain);
        if (r < 0) {
          count(r);
          continue;
        }
        if (r === 0) continue; // keepalive
        if (plain[9] === 1 && plain[20] === 0 && plain[24] === 0x42) result.echoReplies++;
        if (plain[9] === 1 && plain[20] === 8) {
          // Answer wireguard-go's kernel: swap addresses, type 0, same id/seq/payload.
          const v = new DataView(plain.buffer);
          const id = v.getUint16(24), s = v.getUint16(26);
          const payload = plain.slice(28, r);
          sendPacket(icmpEcho(plain, inner.us, inner.them, 0, id, s, payload));
          result.echoRequestsAnswered++;
        }
      } else {
        const r = dev.handshakeMessage(rx.slice(0, d.length), d.ip, d.port);
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
set -- wg set wg0 private-key /run/priv listen-port ${PORT} peer "$TS_PUB" endpoint ${TS_ADDR}:${PORT} allowed-ips 10.99.0.2/32
if [ -n "$WG_PSK" ]; then printf '%s' "$WG_PSK" > /run/psk; set -- "$@" preshared-key /run/psk; fi
"$@"
ip addr add 10.99.0.1/24 dev wg0
ip link set wg0 up
echo READY
wait
`;

async function genkey(): Promise<{ priv: string; pub: string }> {
  const priv = (await runOk(["wg", "genkey"])).trim();
  const pub = (await runOk(["wg", "pubkey"], { stdin: priv })).trim();
  return { priv, pub };
}

async function withPair(
  psk: { wg?: string; ts?: string },
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
    await runOk(["ip", "-n", wgNs, "addr", "add", `${WG_ADDR}/24`, "dev", `${tag}a`]);
    await runOk(["ip", "-n", tsNs, "addr", "add", `${TS_ADDR}/24`, "dev", `${tag}b`]);
    await runOk(["ip", "-n", wgNs, "link", "set", `${tag}a`, "up"]);
    await runOk(["ip", "-n", tsNs, "link", "set", `${tag}b`, "up"]);
    const wg = await genkey(), ts = await genkey();
    const p = new Deno.Command("ip", {
      args: ["netns", "exec", wgNs, "unshare", "-m", "sh", "-c", WG_SCRIPT],
      env: { WG_PRIV: wg.priv, TS_PUB: ts.pub, WG_PSK: psk.wg ?? "" },
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
    void psk.ts;
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

if (import.meta.main && Deno.args[0] === "child") {
  await child(JSON.parse(Deno.args[1]));
} else {
  const haveWg = (await run(["sh", "-c", "command -v wireguard-go && command -v wg"])).code === 0;
  // Root, and Debian's wireguard-go and wireguard-tools.
  const needs = (name: string) => {
    const o = asRoot(name);
    return haveWg ? o : { name: `${o.name} [skipped: needs wireguard-go and wg]`, ignore: true };
  };
  Deno.test({
    ...needs("wireguard-go and our Device complete a handshake and exchange pings both ways"),
    async fn() {
      await withPair({}, async ({ wgNs, tsNs, wgPid, ts, wg }) => {
        const c = runChild(tsNs, { priv: ts.priv, peerPub: wg.pub, seconds: 8 });
        // While our side runs, wireguard-go's kernel pings us through the tunnel.
        await new Promise((r) => setTimeout(r, 3000));
        const ping = await run([
          "ip",
          "netns",
          "exec",
          wgNs,
          "ping",
          "-c",
          "3",
          "-i",
          "0.3",
          "-W",
          "2",
          "10.99.0.2",
        ]);
        const out = await c.output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        const res = JSON.parse(text.trim().split("\n").pop()!) as ChildResult;
        assert.ok(res.handshake, `no session: ${text}`);
        assert.ok(res.echoReplies >= 1, `no echo reply decrypted: ${text}`);
        assert.equal(ping.code, 0, `wireguard-go side ping failed: ${ping.stdout}`);
        assert.ok(res.echoRequestsAnswered >= 3, text);
        assert.deepEqual(res.drops, {});
        const dump = await runOk([
          "nsenter",
          "-t",
          String(wgPid),
          "-m",
          "-n",
          "wg",
          "show",
          "wg0",
          "dump",
        ]);
        const peerLine = dump.trim().split("\n")[1].split("\t");
        assert.ok(Number(peerLine[4]) > 0, `wireguard-go saw a handshake: ${dump}`);
        assert.ok(
          Number(peerLine[5]) > 0 && Number(peerLine[6]) > 0,
          `transfer both ways: ${dump}`,
        );
      });
    },
  });

  Deno.test({
    ...needs("wireguard-go and our Device with different PSKs form no session"),
    async fn() {
      const psk1 = (await runOk(["wg", "genpsk"])).trim();
      const psk2 = (await runOk(["wg", "genpsk"])).trim();
      await withPair({ wg: psk1 }, async ({ tsNs, ts, wg }) => {
        const c = runChild(tsNs, { priv: ts.priv, peerPub: wg.pub, psk: psk2, seconds: 4 });
        const out = await c.output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        const res = JSON.parse(text.trim().split("\n").pop()!) as ChildResult;
        assert.equal(res.handshake, false);
        assert.equal(res.echoReplies, 0);
        assert.ok((res.drops.handshake ?? 0) >= 1, `the response is refused and counted: ${text}`);
      });
    },
  });
}
