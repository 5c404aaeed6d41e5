/**
 * UDP socket building blocks (ffi/udp.ts) on loopback: sendto/recvfrom, mmsg batches, truncation,
 * GSO sends and GRO receives, buffer sizes, poll. Sockets bind 127.0.0.1 only (allowed in the
 * machine's own namespace); SO_*BUFFORCE needs root, hence tests/kernel.
 */

import assert from "node:assert/strict";
import {
  bind,
  DatagramBatch,
  drainEventFd,
  getsockname,
  getsockoptInt,
  Poller,
  recvfrom,
  sendto,
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
import { isErrno } from "../../ffi/errno.ts";
import { asRoot } from "./root.ts";

const LO = 0x7f000001;

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

Deno.test(
  asRoot("DatagramBatch sends 40 datagrams with sendmmsg and receives them with recvmmsg"),
  () => {
    const { a, b, pa, pb } = pair();
    const tx = new DatagramBatch(40, 2048);
    const rx = new DatagramBatch(64, 2048);
    try {
      for (let i = 0; i < 40; i++) {
        tx.payload(i).fill(i, 0, 100 + i);
        tx.setSend(i, 100 + i, LO, pb);
      }
      assert.equal(tx.send(a.fd, 40), 40);
      let got = 0;
      while (got < 40 && waitReadable(b.fd)) {
        const n = rx.recv(b.fd);
        assert.ok(n > 0, `recvmmsg: ${n}`);
        for (let i = 0; i < n; i++) {
          const k = got + i;
          assert.equal(rx.len(i), 100 + k);
          assert.equal(rx.addrIp(i), LO);
          assert.equal(rx.addrPort(i), pa);
          assert.equal(rx.truncated(i), false);
          assert.ok(rx.payload(i).subarray(0, 100 + k).every((x) => x === k));
        }
        got += n;
      }
      assert.equal(got, 40);
      assert.equal(rx.recv(b.fd), -11, "empty socket: -EAGAIN");
    } finally {
      a.close();
      b.close();
    }
  },
);

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
