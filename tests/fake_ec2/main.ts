/**
 * Runs the fake EC2 + IMDS as its own process, e.g. inside a test namespace:
 * `deno run -A tests/fake_ec2/main.ts --hostname=10.9.0.1 --port=0 --hosts=i-0a=10.9.0.2,i-0b=10.9.0.3`.
 * Prints `listening on http://<host>:<port>` once it serves; the test drives it with the control
 * API (`/_fake/…`, see server.ts), also served on the unix socket `--control=<path>` so a test in
 * another network namespace reaches it through the file system. Stops on SIGTERM or SIGINT.
 */

import { parseArgs } from "node:util";
import { FakeEc2 } from "./server.ts";
import { defaultState } from "./state.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    hostname: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    hosts: { type: "string", default: "i-0123456789abcdef0=127.0.0.1" },
    control: { type: "string" },
  },
});

const hosts = values.hosts.split(",").filter(Boolean).map((h) => {
  const [instanceId, privateIp] = h.split("=");
  return { instanceId, privateIp };
});
const fake = new FakeEc2(defaultState(hosts));
const ac = new AbortController();
for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => ac.abort());
const server = fake.serve({
  hostname: values.hostname,
  port: Number(values.port),
  signal: ac.signal,
});
const control = values.control
  ? Deno.serve(
    { path: values.control, signal: ac.signal, onListen() {} },
    (req) => fake.handle(req, "unix"),
  )
  : null;
console.log(`listening on http://${values.hostname}:${server.addr.port}`);
await server.finished;
await control?.finished;
