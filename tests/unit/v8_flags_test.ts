/**
 * The daemon's V8 flags are set once, in deno.json's compile task: the test harness's `deno run`
 * and the README's from-source command must carry the same ones (docs/benchmarks.md has why).
 */

import assert from "node:assert/strict";
import { DAEMON_V8_FLAGS, REPO_ROOT } from "../harness/cluster.ts";

Deno.test("the compile task, the harness and the README run the daemon with the same V8 flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  const flags = /--v8-flags=(\S+)/.exec(config.tasks.compile)?.[1];
  assert.ok(flags, `no --v8-flags in the compile task: ${config.tasks.compile}`);
  assert.deepEqual(DAEMON_V8_FLAGS, [`--v8-flags=${flags}`]);
  const readme = await Deno.readTextFile(`${REPO_ROOT}/README.md`);
  const runs = readme.split("\n").filter((l) => /^deno run .*main\.ts/.test(l));
  assert.ok(runs.length > 0, "README shows no `deno run … main.ts` command");
  for (const line of runs) assert.ok(line.includes(`--v8-flags=${flags} `), line);
});
