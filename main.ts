/**
 * flannel: gives every host of a cluster its own subnet of one overlay network, leased in etcd,
 * and carries traffic between the subnets.
 *
 * `deno run -A main.ts [flags]` behaves exactly like the compiled binary.
 */

import { parseOptions } from "./lib/options.ts";
import { runDaemon } from "./lib/daemon.ts";

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
