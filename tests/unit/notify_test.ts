import assert from "node:assert/strict";
import { encodeSockaddrUn, sdNotify } from "../../ffi/notify.ts";

Deno.test("encodeSockaddrUn() lays out file and abstract names", () => {
  const file = encodeSockaddrUn("/run/systemd/notify");
  assert.equal(file.len, 2 + "/run/systemd/notify".length + 1); // family + path + NUL
  assert.deepEqual([...file.addr.subarray(0, 3)], [1, 0, "/".charCodeAt(0)]); // AF_UNIX, LE
  const abs = encodeSockaddrUn("@flannel-test");
  assert.equal(abs.len, 2 + 1 + "flannel-test".length); // family + leading NUL + name
  assert.equal(abs.addr[2], 0);
  assert.equal(String.fromCharCode(...abs.addr.subarray(3, abs.len)), "flannel-test");
  assert.throws(() => encodeSockaddrUn("/" + "x".repeat(200)), /Socket path is too long/);
});

Deno.test("sdNotify() returns false without NOTIFY_SOCKET", () => {
  assert.equal(sdNotify("READY=1", undefined), false);
});

Deno.test("sdNotify() delivers READY=1 to a datagram socket, as systemd receives it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fl-notify-" });
  const path = `${dir}/notify.sock`;
  // A listener in a child process: Deno's unix datagram sockets are behind --unstable-net.
  const listener = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--unstable-net",
      `const s = Deno.listenDatagram({ transport: "unixpacket", path: ${JSON.stringify(path)} });
       console.log("listening");
       const [data] = await s.receive();
       console.log(new TextDecoder().decode(data));
       s.close();`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    for (let i = 0; i < 100; i++) {
      try {
        await Deno.stat(path);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.equal(sdNotify("READY=1", path), true);
    const out = new TextDecoder().decode((await listener.output()).stdout);
    assert.deepEqual(out.trim().split("\n"), ["listening", "READY=1"]);
  } finally {
    try {
      listener.kill();
    } catch { /* already exited */ }
    await Deno.remove(dir, { recursive: true });
  }
});
