/**
 * Struct layouts in ffi/structs.ts against the C compiler's own `sizeof`/`offsetof` (the test
 * compiles a tiny C program; it is skipped where no `cc` is installed).
 */

import assert from "node:assert/strict";
import {
  CMSGHDR,
  cmsgLen,
  cmsgSpace,
  decodeIfreqName,
  decodeSockaddrIn,
  encodeIfreq,
  encodeSockaddrIn,
  IFREQ,
  IOVEC,
  MMSGHDR,
  MSGHDR,
  POLLFD,
  SOCKADDR_IN,
  SOCKADDR_NL,
  VIRTIO_NET_HDR,
} from "../../ffi/structs.ts";

const C_SOURCE = `
#define _GNU_SOURCE
#include <stdio.h>
#include <stddef.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#define S(t) printf("%s.size=%zu\\n", #t, sizeof(struct t))
#define O(t, f, n) printf("%s.%s=%zu\\n", #t, n, offsetof(struct t, f))
int main(void) {
  S(sockaddr_in); O(sockaddr_in, sin_family, "family"); O(sockaddr_in, sin_port, "port");
  O(sockaddr_in, sin_addr, "addr");
  S(sockaddr_nl); O(sockaddr_nl, nl_family, "family"); O(sockaddr_nl, nl_pid, "pid"); O(sockaddr_nl, nl_groups, "groups");
  S(pollfd); O(pollfd, fd, "fd"); O(pollfd, events, "events"); O(pollfd, revents, "revents");
  S(ifreq); O(ifreq, ifr_name, "name"); O(ifreq, ifr_flags, "flags"); O(ifreq, ifr_mtu, "mtu");
  O(ifreq, ifr_qlen, "qlen"); O(ifreq, ifr_ifindex, "ifindex");
  S(iovec); O(iovec, iov_base, "base"); O(iovec, iov_len, "len");
  S(msghdr); O(msghdr, msg_name, "name"); O(msghdr, msg_namelen, "namelen");
  O(msghdr, msg_iov, "iov"); O(msghdr, msg_iovlen, "iovlen"); O(msghdr, msg_control, "control");
  O(msghdr, msg_controllen, "controllen"); O(msghdr, msg_flags, "flags");
  S(mmsghdr); O(mmsghdr, msg_hdr, "hdr"); O(mmsghdr, msg_len, "len");
  S(cmsghdr); O(cmsghdr, cmsg_len, "len"); O(cmsghdr, cmsg_level, "level");
  O(cmsghdr, cmsg_type, "type");
  printf("cmsghdr.data=%zu\\n", (size_t)CMSG_LEN(0));
  printf("CMSG_LEN2=%zu\\nCMSG_SPACE2=%zu\\nCMSG_SPACE4=%zu\\n", (size_t)CMSG_LEN(2),
         (size_t)CMSG_SPACE(2), (size_t)CMSG_SPACE(4));
  S(virtio_net_hdr); O(virtio_net_hdr, flags, "flags"); O(virtio_net_hdr, gso_type, "gsoType");
  O(virtio_net_hdr, hdr_len, "hdrLen"); O(virtio_net_hdr, gso_size, "gsoSize");
  O(virtio_net_hdr, csum_start, "csumStart"); O(virtio_net_hdr, csum_offset, "csumOffset");
  return 0;
}
`;

function haveCc(): boolean {
  try {
    return new Deno.Command("cc", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

async function cLayouts(): Promise<Map<string, number>> {
  const dir = await Deno.makeTempDir({ prefix: "fl-structs-" });
  try {
    await Deno.writeTextFile(`${dir}/s.c`, C_SOURCE);
    const cc = await new Deno.Command("cc", { args: ["-o", `${dir}/s`, `${dir}/s.c`] }).output();
    assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(`${dir}/s`).output();
    const map = new Map<string, number>();
    for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
      const [k, v] = line.split("=");
      map.set(k, Number(v));
    }
    return map;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "struct layouts match the C compiler's sizeof and offsetof",
  ignore: !haveCc(),
  fn: async (t) => {
    const c = await cLayouts();
    const tables: [string, Record<string, number>][] = [
      ["sockaddr_in", SOCKADDR_IN],
      ["sockaddr_nl", SOCKADDR_NL],
      ["pollfd", POLLFD],
      ["ifreq", IFREQ],
      ["iovec", IOVEC],
      ["msghdr", MSGHDR],
      ["mmsghdr", MMSGHDR],
      ["cmsghdr", CMSGHDR],
      ["virtio_net_hdr", VIRTIO_NET_HDR],
    ];
    for (const [name, layout] of tables) {
      await t.step(name, () => {
        for (const [field, value] of Object.entries(layout)) {
          assert.equal(value, c.get(`${name}.${field}`), `${name}.${field}`);
        }
      });
    }
    await t.step("CMSG_LEN and CMSG_SPACE", () => {
      assert.equal(cmsgLen(2), c.get("CMSG_LEN2"));
      assert.equal(cmsgSpace(2), c.get("CMSG_SPACE2"));
      assert.equal(cmsgSpace(4), c.get("CMSG_SPACE4"));
    });
  },
});

Deno.test("struct sizes are the x86-64 Linux values", () => {
  assert.deepEqual(
    [IFREQ.size, IOVEC.size, MSGHDR.size, MMSGHDR.size, CMSGHDR.size, VIRTIO_NET_HDR.size],
    [40, 16, 56, 64, 16, 10],
  );
});

Deno.test("encodeIfreq() puts the name and the host-order flags at their offsets", () => {
  const b = encodeIfreq("flannel%d", 0x1001);
  assert.equal(b.length, 40);
  assert.equal(decodeIfreqName(b), "flannel%d");
  assert.equal(b[16], 0x01);
  assert.equal(b[17], 0x10);
  const q = encodeIfreq("tun0", 1000, true);
  assert.equal(new DataView(q.buffer).getInt32(16, true), 1000);
});

Deno.test("encodeIfreq() refuses names of 16 bytes or more", () => {
  assert.throws(() => encodeIfreq("a".repeat(16)), /Interface name too long/);
  assert.equal(decodeIfreqName(encodeIfreq("a".repeat(15))), "a".repeat(15));
});

Deno.test("sockaddr_in round-trips with the port and address in network order", () => {
  const b = encodeSockaddrIn(0x0a010203, 8285);
  assert.deepEqual([...b.subarray(0, 8)], [2, 0, 0x20, 0x5d, 10, 1, 2, 3]);
  assert.deepEqual(decodeSockaddrIn(b), { ip: 0x0a010203, port: 8285 });
});
