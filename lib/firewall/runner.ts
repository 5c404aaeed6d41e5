/**
 * The one place the daemon runs a program: `iptables-save` and `iptables-restore`, or their
 * `ip6tables-` twins for IPv6 (same package, same backend, same options). Everything else
 * of the firewall goes through the {@link FirewallRunner} interface, so the rule logic is tested
 * against a recording fake.
 *
 * iptables rather than nft: Docker 20.10 (Debian's docker.io) programs its rules with iptables
 * and sets the filter FORWARD policy to DROP. In nftables every base chain on a hook must accept
 * a packet, so an accept in a table of flannel's own would not save forwarded traffic from
 * Docker's drop; the accept rules must sit in the same FORWARD chain, which only the same tool
 * reaches. Using the `iptables-restore` that `iptables` resolves to also follows the host's
 * choice of backend (Debian 12's default is iptables-nft; iptables-legacy works the same).
 */

/** The commands the firewall needs. */
export interface FirewallRunner {
  /** `iptables` or `ip6tables`: which family's tables the runner reads and writes. */
  readonly tool: "iptables" | "ip6tables";
  /** Tool name and version for the log, e.g. `iptables-restore v1.8.9 (nf_tables)`. */
  readonly version: string;
  /** Whether MASQUERADE accepts `--random-fully` (iptables ≥ 1.6.2). */
  readonly randomFully: boolean;
  /** `iptables-save -t TABLE` (`ip6tables-save` for IPv6). */
  save(table: string): Promise<string>;
  /** `iptables-restore --noflush` with `input` on stdin. */
  restore(input: string): Promise<void>;
}

/** The firewall tools are missing or failed; the message names the tool and what to do. */
export class FirewallError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FirewallError";
  }
}

/** How long one tool run may take (the xtables lock wait included). */
const RUN_TIMEOUT_MS = 15_000;
/** Seconds iptables waits for the xtables lock another program (Docker) holds. */
const LOCK_WAIT_S = "5";

/**
 * Checks that `iptables-save` and `iptables-restore` (`ip6tables-…` for `family` 6) run and
 * returns a runner over them. `why` names the flag that needs them, for the error when they are
 * missing.
 */
export async function openIptables(why: string, family: 4 | 6 = 4): Promise<FirewallRunner> {
  const tool = family === 4 ? "iptables" : "ip6tables";
  const out = await run(`${tool}-restore`, ["--version"], null, why);
  await run(`${tool}-save`, ["--version"], null, why);
  const version = out.trim().split("\n")[0];
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(version);
  const n = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  const randomFully = n[0] > 1 || (n[0] === 1 && (n[1] > 6 || (n[1] === 6 && n[2] >= 2)));
  return {
    tool,
    version,
    randomFully,
    save: (table) => run(`${tool}-save`, ["-t", table], null, why),
    restore: async (input) => {
      await run(`${tool}-restore`, ["-w", LOCK_WAIT_S, "--noflush"], input, why);
    },
  };
}

async function run(cmd: string, args: string[], stdin: string | null, why: string) {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: stdin === null ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      // No cause: "Failed to spawn … entity not found" would only repeat the message. Debian's
      // iptables package holds ip6tables too.
      throw new FirewallError(
        `${why} needs ${cmd}, which is not installed: apt-get install iptables`,
      );
    }
    throw new FirewallError(`Cannot run ${cmd}: ${(err as Error).message}`, { cause: err });
  }
  if (stdin !== null) {
    const w = child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(stdin));
    } finally {
      await w.close().catch(() => {});
    }
  }
  const r = await child.output();
  const dec = new TextDecoder();
  if (!r.success) {
    const err = dec.decode(r.stderr).trim().split("\n").slice(0, 3).join("; ");
    const how = r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`;
    throw new FirewallError(`${cmd} ${args.join(" ")} ${how}: ${err || "no message"}`);
  }
  return dec.decode(r.stdout);
}
