/**
 * The README's first command: the demo prints the lease table and subnet.env of each host, and
 * removes every namespace it made — also when interrupted with Ctrl-C.
 */

import assert from "node:assert/strict";
import { REPO_ROOT } from "../harness/cluster.ts";
import { listNamespaces } from "../harness/netns.ts";

function demo(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/scripts/demo.ts`, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

function tagsIn(text: string): string[] {
  return [...new Set([...text.matchAll(/\b(fl[0-9a-f]{4})-hub\b/g)].map((m) => m[1]))];
}

Deno.test("demo --backend=alloc shows the lease table and each subnet.env, then cleans up", async () => {
  const out = await demo(["--backend=alloc", "--hosts=2"]).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stdout + stderr);
  assert.match(stdout, /SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+TTL/);
  assert.match(stdout, /10\.1\.\d+\.0\/24\s+192\.168\.100\.11\s+\(none\)\s+-\s+\d+ s/);
  assert.match(stdout, /10\.1\.\d+\.0\/24\s+192\.168\.100\.12\s+/);
  assert.equal(stdout.match(/^ {2}FLANNEL_SUBNET=10\.1\.\d+\.1\/24$/gm)?.length, 2, stdout);
  assert.match(stdout, /ping matrix skipped/);
  const tags = tagsIn(stdout);
  assert.equal(tags.length, 1);
  assert.deepEqual(listNamespaces().filter((n) => n.startsWith(tags[0])), []);
});

Deno.test("demo --keep tears everything down on Ctrl-C", async () => {
  const child = demo(["--backend=alloc", "--hosts=1", "--keep"]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("Ctrl-C removes it")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const tags = tagsIn(text);
  assert.equal(tags.length, 1, text);
  assert.equal(listNamespaces().filter((n) => n.startsWith(tags[0])).length, 2);
  child.kill("SIGINT");
  const status = await child.status;
  await reader.cancel();
  await child.stderr.cancel();
  assert.equal(status.code, 130);
  assert.deepEqual(listNamespaces().filter((n) => n.startsWith(tags[0])), []);
});

Deno.test("demo --backend=vxlan shows VtepMACs and a full ping matrix", async () => {
  const out = await demo(["--backend=vxlan", "--hosts=3"]).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, stdout + new TextDecoder().decode(out.stderr));
  assert.equal(
    stdout.match(
      /^10\.1\.\d+\.0\/24\s+192\.168\.100\.1[123]\s+vxlan\s+([0-9a-f]{2}:){5}[0-9a-f]{2}\s/gm,
    )
      ?.length,
    3,
    stdout,
  );
  assert.equal(stdout.match(/✓ [\d.]+ ms/g)?.length, 6, stdout);
  assert.doesNotMatch(stdout, /✗/);
});
