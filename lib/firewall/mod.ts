/**
 * flannel's firewall rules (`--ip-masq`, `--iptables-forward-rules`): installed once before
 * subnet.env is written, then re-checked every `--iptables-resync` seconds and restored when
 * someone removed or changed them (a `iptables -F`, a firewall reload, Docker restarting).
 *
 * Design: what is wanted is a list of {@link RuleSet}s (rules.ts, pure); each check reads the
 * tables with `iptables-save`, and when anything of flannel's differs, one
 * `iptables-restore --noflush` replaces flannel's chains and adds the missing jump — atomically,
 * touching no rule that is not flannel's. The rules stay when the daemon exits, like the lease,
 * so a restart does not interrupt traffic; a restart with another subnet refills the chains.
 *
 * One Firewall keeps one family's tables (a runner over iptables or ip6tables): a dual-stack
 * network has two, each installed, re-checked and restored on its own, so a broken ip6tables
 * never holds back the IPv4 rules (readiness reports both).
 */

import { sleep } from "../async.ts";
import { errText, type Logger, logger } from "../log.ts";
import { configDrift, kernelChanges, kernelFailures, resyncs } from "../health/catalog.ts";
import { driftOf, forwardRuleSet, masqRuleSet, parseSave, restoreInput } from "./rules.ts";
import type { RuleSet } from "./rules.ts";
import type { FirewallRunner } from "./runner.ts";

export {
  familyOf,
  FORWARD_CHAIN,
  forwardRuleSet,
  MASQ_CHAIN,
  masqRuleSet,
  type RuleSet,
} from "./rules.ts";
export { FirewallError, type FirewallRunner, openIptables } from "./runner.ts";

/** What the flags ask for, for one family. */
export interface FirewallWants {
  /** The overlay Network (Network or IPv6Network), CIDR text. */
  network: string;
  /** The own lease of the same family, CIDR text. */
  subnet: string;
  ipMasq: boolean;
  /** `--ip-masq-fully-random-disable` turns it off; also off when iptables lacks it. */
  randomFully: boolean;
  forwardRules: boolean;
}

/** The rule sets the flags ask for (empty when no flag needs the firewall). */
export function wantedRuleSets(w: FirewallWants): RuleSet[] {
  const sets: RuleSet[] = [];
  if (w.ipMasq) sets.push(masqRuleSet(w.network, w.subnet, w.randomFully));
  if (w.forwardRules) sets.push(forwardRuleSet(w.network));
  return sets;
}

/** Keeps a list of rule sets of one family installed. */
export class Firewall {
  readonly #runner: FirewallRunner;
  readonly #sets: readonly RuleSet[];
  readonly #log: Logger;
  #installed = false;

  /** Throws when a set is of the other family than `runner` (a programming error). */
  constructor(runner: FirewallRunner, sets: readonly RuleSet[], log: Logger = logger("firewall")) {
    const family = runner.tool === "iptables" ? 4 : 6;
    const other = sets.find((s) => s.family !== family);
    if (other) throw new Error(`IPv${other.family} rule set ${other.name} given to ${runner.tool}`);
    this.#runner = runner;
    this.#sets = sets;
    this.#log = log;
  }

  /** `iptables` or `ip6tables`. */
  get tool(): string {
    return this.#runner.tool;
  }

  /** True once the rules were in place at the last check. */
  get installed(): boolean {
    return this.#installed;
  }

  /**
   * Compares the installed rules with the wanted ones and restores what differs. Returns what
   * was found different, each item led by the tool (empty when everything was in place). Throws a {@link FirewallError}
   * when the tools fail.
   */
  async ensure(): Promise<string[]> {
    const tables = [...new Set(this.#sets.map((s) => s.table))];
    let text = "";
    try {
      for (const t of tables) text += await this.#runner.save(t);
    } catch (err) {
      this.#installed = false;
      throw err;
    }
    const saved = parseSave(text);
    const drift = this.#sets.flatMap((s) => driftOf(saved, s)).map((d) =>
      `${this.#runner.tool}: ${d}`
    );
    const input = restoreInput(saved, this.#sets);
    if (input === null) {
      this.#installed = true;
      return [];
    }
    try {
      await this.#runner.restore(input);
    } catch (err) {
      this.#installed = false;
      kernelFailures.inc({ kind: "firewall", op: "set" });
      throw err;
    }
    kernelChanges.inc({ kind: "firewall", op: "set" });
    this.#installed = true;
    return drift;
  }

  /** Installs the rules; throws when that fails (the daemon then exits). */
  async install(): Promise<void> {
    const drift = await this.ensure();
    const what = this.#sets.map((s) => `${s.table} ${s.chain} (${s.rules.length} rules)`);
    this.#log.info(
      drift.length === 0
        ? `Firewall rules already in place: ${what.join(", ")}`
        : `Installed firewall rules with ${this.#runner.version}: ${what.join(", ")}`,
    );
  }

  /** Re-checks every `periodMs` until `signal` aborts; failures are logged and retried. */
  async keep(periodMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(periodMs, signal);
      } catch {
        return;
      }
      resyncs.inc({ what: "firewall" });
      try {
        const drift = await this.ensure();
        if (drift.length > 0) {
          configDrift.inc({ what: "firewall" });
          this.#log.warn(`Firewall rules changed by someone else, restored: ${drift.join("; ")}`);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.#log.error(`Cannot restore firewall rules: ${errText(err)}`);
      }
    }
  }
}
