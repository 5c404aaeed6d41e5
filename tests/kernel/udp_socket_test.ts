/**
 * UDP socket building blocks (ffi/udp.ts) on loopback: sendto/recvfrom, mmsg batches, truncation,
 * GSO sends and GRO receives, buffer sizes, poll; the same over IPv6, and a dual-stack socket
 * whose IPv4 peers are v4-mapped. Sockets bind 127.0.0.1, ::1 or ::ffff:127.0.0.1
 * only (allowed in the machine's own namespace); SO_*BUFFORCE needs root, hence tests/kernel.
 */

import assert from "node:assert/strict";
import {
  bind,
  bind6,
  DatagramBatch,
  drainEventFd,
  getsockname,
  getsockname6,
  getsockoptInt,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  Poller,
  recvfrom,
  recvfrom6,
  sendto,
  sendto6,
  sendtoRaw6,
  setBufferSizes,
  setsockoptInt,
  SO_RCVBUF,
  SO_SNDBUF,
  SOL_SOCKET,
  SOL_UDP,
  UDP_GRO,
  udpSocket,
  Wakeup,
} from "../../ffi/udp.ts";
import { POLLIN } from "../../ffi/structs.ts";
import type { Fd } from "../../ffi/fd.ts";
import { isErrno } from "../../ffi/errno.ts";
import { asRoot } from "./root.ts";

const LO = 0x7f000001;
const LO6 = new Uint8Array(16);
LO6[15] = 1; // ::1

function pair6() {
  const a = udpSocket({ ipv6: true });
  const b = udpSocket({ ipv6: true });
  bind6(a, LO6, 0);
  bind6(b, LO6, 0);
  return { a, b, pa: getsockname6(a).port, pb: getsockname6(b).port };
}

function pair() {
  const a = udpSocket();
  const b = udpSocket();
  bind(a, LO, 0);
  bind(b, LO, 0);
  return { a, b, pa: getsockname(a).port, pb: getsockname(b).port };
}

function waitReadable(fd: number, ms = 1000): boolean {
  return new Poller([fd], POLLIN).poll(ms) > 0;
}

Deno.test(asRoot("sendto() and recvfrom() carry a datagram with its source address"), () => {
  const { a, b, pa, pb } = pair();
  try {
    assert.equal(recvfrom(b, new Uint8Array(100)), null, "nothing waiting: EAGAIN → null");
    assert.equal(sendto(a, new Uint8Array([1, 2, 3]), LO, pb), 3);
    assert.ok(waitReadable(b.fd));
    const buf = new Uint8Array(100);
    const r = recvfrom(b, buf)!;
    assert.deepEqual(r, { length: 3, truncated: false, ip: LO, port: pa });
    assert.deepEqual([...buf.subarray(0, 3)], [1, 2, 3]);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test(asRoot("bind() to a taken port fails with EADDRINUSE and names the address"), () => {
  const { a, pa } = pair();
  const c = udpSocket();
  try {
    assert.throws(
      () => bind(c, LO, pa),
      (e) => isErrno(e, "EADDRINUSE") && (e as Error).message.includes(`127.0.0.1:${pa}`),
    );
  } finally {
    a.close();
    c.close();
  }
});

/**
 * One way of addressing a batch: the sockets, the batch family, how a slot's destination is
 * set, and the source address the receiver must see.
 */
interface BatchVariant {
  readonly name: string;
  readonly open: () => { a: Fd; b: Fd; pa: number; pb: number };
  /** Families of the sending and the receiving batch. */
  readonly txFamily: 4 | 6;
  readonly rxFamily: 4 | 6;
  readonly setDest: (tx: DatagramBatch, i: number, len: number, port: number) => void;
  readonly checkSource: (rx: DatagramBatch, i: number) => void;
}

// The IPv6 destination comes from inside a larger buffer (as from a peer table): offset 5.
const TABLE6 = new Uint8Array(32).fill(0xee);
TABLE6.set(LO6, 5);

const BATCH_VARIANTS: BatchVariant[] = [
  {
    name: "IPv4",
    open: pair,
    txFamily: 4,
    rxFamily: 4,
    setDest: (tx, i, len, port) => tx.setSend(i, len, LO, port),
    checkSource: (rx, i) => assert.equal(rx.addrIp(i), LO),
  },
  {
    name: "IPv6",
    open: pair6,
    txFamily: 6,
    rxFamily: 6,
    setDest: (tx, i, len, port) => tx.setSend6(i, len, TABLE6, 5, port),
    checkSource: (rx, i) => {
      assert.deepEqual(rx.addr6(i), LO6);
      assert.equal(rx.mappedIp(i), -1, "a real IPv6 source is not v4-mapped");
    },
  },
  {
    // The wireguard single device's socket: IPv4 peers as ::ffff:a.b.c.d, both ways.
    name: "dual-stack socket to an IPv4 one, then back",
    open: pairDual,
    txFamily: 6,
    rxFamily: 4,
    setDest: (tx, i, len, port) => tx.setSendMapped(i, len, LO, port),
    checkSource: (rx, i) => assert.equal(rx.addrIp(i), LO),
  },
];

/**
 * `a`: a dual-stack socket on ::ffff:127.0.0.1 (v4-mapped loopback: the daemon binds [::], which
 * a test in the machine's own namespace must not); `b`: an IPv4 socket on 127.0.0.1.
 */
function pairDual() {
  const a = udpSocket({ ipv6: true, dualStack: true });
  const b = udpSocket();
  const mappedLo = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
  bind6(a, mappedLo, 0);
  bind(b, LO, 0);
  return { a, b, pa: getsockname6(a).port, pb: getsockname(b).port };
}

/** Sends 40 datagrams of 100..139 bytes from `a` to `port` and checks them at `b`. */
function roundTrip(v: BatchVariant, a: Fd, b: Fd, port: number, from: number): void {
  const tx = new DatagramBatch(40, 2048, 0, 0, v.txFamily);
  const rx = new DatagramBatch(64, 2048, 16, 0, v.rxFamily);
  for (let i = 0; i < 40; i++) {
    tx.payload(i).fill(i, 0, 100 + i);
    v.setDest(tx, i, 100 + i, port);
  }
  assert.equal(tx.send(a.fd, 40), 40);
  let got = 0;
  while (got < 40 && waitReadable(b.fd)) {
    const n = rx.recv(b.fd);
    assert.ok(n > 0, `recvmmsg: ${n}`);
    for (let i = 0; i < n; i++) {
      const k = got + i;
      assert.equal(rx.len(i), 100 + k);
      v.checkSource(rx, i);
      assert.equal(rx.addrPort(i), from);
      assert.equal(rx.truncated(i), false);
      assert.ok(rx.payload(i).subarray(0, 100 + k).every((x) => x === k));
    }
    got += n;
  }
  assert.equal(got, 40);
  assert.equal(rx.recv(b.fd), -11, "empty socket: -EAGAIN");
}

for (const v of BATCH_VARIANTS) {
  Deno.test(
    asRoot(`${v.name}: a DatagramBatch sends 40 datagrams with sendmmsg, receives with recvmmsg`),
    () => {
      const { a, b, pa, pb } = v.open();
      try {
        roundTrip(v, a, b, pb, pa);
        if (v.txFamily !== v.rxFamily) {
          // Back from the IPv4 socket: the dual-stack socket sees a v4-mapped source.
          const back: BatchVariant = {
            ...v,
            txFamily: 4,
            rxFamily: 6,
            setDest: (tx, i, len, port) => tx.setSend(i, len, LO, port),
            checkSource: (rx, i) => {
              assert.equal(rx.mappedIp(i), LO);
              assert.deepEqual([...rx.addr6(i).subarray(0, 12)], [
                ...new Uint8Array(10),
                0xff,
                0xff,
              ]);
            },
          };
          roundTrip(back, b, a, pa, pb);
        }
      } finally {
        a.close();
        b.close();
      }
    },
  );
}
Deno.test(asRoot("DatagramBatch reports a datagram larger than its slot as truncated"), () => {
  const { a, b, pb } = pair();
  const rx = new DatagramBatch(4, 100);
  try {
    sendto(a, new Uint8Array(300), LO, pb);
    assert.ok(waitReadable(b.fd));
    assert.equal(rx.recv(b.fd), 1);
    assert.equal(rx.truncated(0), true);
    assert.equal(rx.len(0), 100);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test(
  asRoot("a UDP GSO send arrives as segments, or coalesced with the GRO segment size"),
  async (t) => {
    for (const gro of [false, true]) {
      await t.step(gro ? "receiver with UDP_GRO" : "receiver without GRO", () => {
        const { a, b, pb } = pair();
        const tx = new DatagramBatch(1, 4096);
        const rx = new DatagramBatch(8, 65536);
        try {
          if (gro) setsockoptInt(b, SOL_UDP, UDP_GRO, 1);
          for (let i = 0; i < 350; i++) tx.payload(0)[i] = i & 0xff;
          tx.setSend(0, 350, LO, pb, 100);
          assert.equal(tx.send(a.fd, 1), 1);
          const lens: number[] = [];
          const sizes: number[] = [];
          while (lens.reduce((x, y) => x + y, 0) < 350 && waitReadable(b.fd)) {
            const n = rx.recv(b.fd, 8, gro);
            for (let i = 0; i < n; i++) {
              lens.push(rx.len(i));
              sizes.push(rx.groSize(i));
            }
          }
          if (gro) {
            assert.deepEqual(lens, [350]);
            assert.deepEqual(sizes, [100]);
          } else {
            assert.deepEqual(lens, [100, 100, 100, 50]);
            assert.deepEqual(sizes, [0, 0, 0, 0]);
          }
        } finally {
          a.close();
          b.close();
        }
      });
    }
  },
);

Deno.test(
  asRoot("setBufferSizes() sets 4 MiB buffers beyond rmem_max (the kernel reports double)"),
  () => {
    const s = udpSocket();
    try {
      setBufferSizes(s, 4 << 20);
      assert.equal(getsockoptInt(s, SOL_SOCKET, SO_RCVBUF), 8 << 20);
      assert.equal(getsockoptInt(s, SOL_SOCKET, SO_SNDBUF), 8 << 20);
    } finally {
      s.close();
    }
  },
);

Deno.test(asRoot("Poller.poll() times out with 0 on an idle socket"), () => {
  const s = udpSocket();
  try {
    bind(s, LO, 0);
    const t0 = performance.now();
    assert.equal(new Poller([s.fd], POLLIN).poll(50), 0);
    assert.ok(performance.now() - t0 >= 45);
  } finally {
    s.close();
  }
});

Deno.test(asRoot("Wakeup.signal() makes a poll return at once; drainEventFd() resets it"), () => {
  using w = new Wakeup();
  const p = new Poller([w.fd.fd], POLLIN);
  assert.equal(p.poll(0), 0);
  w.signal();
  w.signal();
  const t0 = performance.now();
  assert.equal(p.poll(1000), 1);
  assert.ok(performance.now() - t0 < 100);
  drainEventFd(w.fd.fd, new Uint8Array(8));
  assert.equal(p.poll(0), 0);
});

Deno.test(asRoot("IPv6: an AF_INET6 socket is V6ONLY and carries a datagram over ::1"), () => {
  const { a, b, pa, pb } = pair6();
  try {
    assert.equal(getsockoptInt(a, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    assert.deepEqual(getsockname6(a).addr, LO6);
    assert.equal(recvfrom6(b, new Uint8Array(100)), null, "nothing waiting: EAGAIN → null");
    assert.equal(sendto6(a, new Uint8Array([1, 2, 3]), LO6, pb), 3);
    assert.equal(sendtoRaw6(a.fd, new Uint8Array([4, 5]), LO6, pb), 2);
    assert.ok(waitReadable(b.fd));
    const buf = new Uint8Array(2);
    assert.deepEqual(recvfrom6(b, buf), { length: 3, truncated: true, addr: LO6, port: pa });
    assert.deepEqual([...buf], [1, 2]);
    assert.deepEqual(recvfrom6(b, buf), { length: 2, truncated: false, addr: LO6, port: pa });
    assert.deepEqual([...buf], [4, 5]);
    assert.equal(sendtoRaw6(a.fd, new Uint8Array(1), new Uint8Array(16), 0), -22, "[::]:0: EINVAL");
  } finally {
    a.close();
    b.close();
  }
});

Deno.test(asRoot("IPv6: bind6() to a taken port fails with EADDRINUSE naming [::1]:port"), () => {
  const { a, pa } = pair6();
  const c = udpSocket({ ipv6: true });
  try {
    assert.throws(
      () => bind6(c, LO6, pa),
      (e) => isErrno(e, "EADDRINUSE") && (e as Error).message.includes(`[::1]:${pa}`),
    );
    assert.throws(() => bind6(c, new Uint8Array(4), 0), /IPv6 address: 4 bytes/);
  } finally {
    a.close();
    c.close();
  }
});

Deno.test(
  asRoot("IPv6: a UDP GSO send arrives coalesced with the GRO segment size, or as segments"),
  async (t) => {
    for (const gro of [false, true]) {
      await t.step(gro ? "receiver with UDP_GRO" : "receiver without GRO", () => {
        const { a, b, pb } = pair6();
        const tx = new DatagramBatch(1, 4096, 0, 0, 6);
        const rx = new DatagramBatch(8, 65536, 0, 0, 6);
        try {
          if (gro) setsockoptInt(b, SOL_UDP, UDP_GRO, 1);
          tx.setSend6(0, 350, LO6, 0, pb, 100);
          assert.equal(tx.send(a.fd, 1), 1);
          const lens: number[] = [];
          const sizes: number[] = [];
          while (lens.reduce((x, y) => x + y, 0) < 350 && waitReadable(b.fd)) {
            const n = rx.recv(b.fd, 8, gro);
            for (let i = 0; i < n; i++) {
              lens.push(rx.len(i));
              sizes.push(rx.groSize(i));
            }
          }
          assert.deepEqual(lens, gro ? [350] : [100, 100, 100, 50]);
          assert.deepEqual(sizes, gro ? [100] : [0, 0, 0, 0]);
        } finally {
          a.close();
          b.close();
        }
      });
    }
  },
);

Deno.test(asRoot("IPv6 and IPv4 batches side by side keep their own address forms"), () => {
  const v4 = pair();
  const v6 = pair6();
  const rx4 = new DatagramBatch(2, 64);
  const rx6 = new DatagramBatch(2, 64, 0, 0, 6);
  try {
    sendto(v4.a, new Uint8Array(7), LO, v4.pb);
    sendto6(v6.a, new Uint8Array(9), LO6, v6.pb);
    assert.ok(waitReadable(v4.b.fd) && waitReadable(v6.b.fd));
    assert.equal(rx4.recv(v4.b.fd), 1);
    assert.equal(rx6.recv(v6.b.fd), 1);
    assert.deepEqual([rx4.len(0), rx4.addrIp(0), rx4.addrPort(0)], [7, LO, v4.pa]);
    assert.deepEqual([rx6.len(0), rx6.addrPort(0)], [9, v6.pa]);
    assert.deepEqual(rx6.addr6(0), LO6);
  } finally {
    for (const s of [v4.a, v4.b, v6.a, v6.b]) s.close();
  }
});
