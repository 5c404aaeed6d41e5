/**
 * flannel: gives every host of a cluster its own subnet of one overlay network, leased in etcd,
 * and carries traffic between the subnets.
 *
 * `deno run -A main.ts [flags]` behaves exactly like the compiled binary.
 */

import { blockSigusr1ForGood } from "./lib/sigusr1.ts";
import { errText } from "./lib/log.ts";

// First, before the rest of the program is even loaded: a process that does not block SIGUSR1
// re-executes itself blocking it, so Deno's "SIGUSR1 opens the inspector" can never run
// (docs/design.md, "SIGUSR1"). The imports below are dynamic so that this runs within
// milliseconds of start, long before Deno installs its handler.
try {
  blockSigusr1ForGood();
} catch (err) {
  console.error(`Cannot block SIGUSR1 (the inspector would be open to it): ${errText(err)}`);
  Deno.exit(1);
}

const { parseOptions } = await import("./lib/options.ts");
const { runDaemon } = await import("./lib/daemon.ts");

const parsed = parseOptions(Deno.args, Deno.env.toObject());
switch (parsed.kind) {
  case "help":
    console.log(parsed.text);
    Deno.exit(0);
    break;
  case "version":
    console.log(parsed.text);
    Deno.exit(0);
    break;
  case "error":
    console.error(parsed.message);
    console.error(parsed.usage);
    Deno.exit(2);
    break;
  case "run":
    Deno.exit(await runDaemon(parsed.options));
}
