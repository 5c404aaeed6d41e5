/**
 * The rules flannel installs, and the `iptables-restore --noflush` input that puts them in place
 * — pure text in, text out, so all of it is unit-tested without root.
 *
 * Everything lives in flannel's own chains, reached by one jump rule from a built-in chain:
 * - nat `FLANNEL-POSTRTG` from POSTROUTING (`--ip-masq`): no NAT inside the Network, NAT for
 *   traffic from the Network to outside it (except multicast), as upstream flannel;
 * - filter `FLANNEL-FWD` from FORWARD (`--iptables-forward-rules`): accept forwarding from and to
 *   the Network, which Docker's FORWARD policy DROP would otherwise drop.
 * Declaring a chain in the restore input creates it or empties it, so one restore replaces
 * flannel's chains atomically and leaves every other rule of the table as it is.
 *
 * Rule texts are written exactly as `iptables-save` prints them: the installed state is compared
 * with the wanted one as text.
 *
 * IPv6 (`IPv6Network`, the IPv6 lease) gets the same chains, names and rules from ip6tables, as
 * upstream's MasqIP6Rules and forward rules: only the addresses differ, and multicast is ff00::/8.
 * A rule set's family follows the Network it is made for.
 */

/** One chain of flannel's and the jump to it. */
export interface RuleSet {
  /** What the set is for, in logs and metrics (`masq`, `forward`). */
  readonly name: string;
  /** 4 for iptables, 6 for ip6tables: the family of the Network the set is for. */
  readonly family: 4 | 6;
  readonly table: "nat" | "filter";
  /** flannel's chain. */
  readonly chain: string;
  /** The built-in chain that jumps to {@link chain}. */
  readonly hook: string;
  /** The jump rule, without `-A hook` (as iptables-save prints it after the chain name). */
  readonly jump: string;
  /** The chain's rules in order, each without `-A chain`. */
  readonly rules: readonly string[];
}

/** nat chain of the masquerade rules. */
export const MASQ_CHAIN = "FLANNEL-POSTRTG";
/** filter chain of the forward rules. */
export const FORWARD_CHAIN = "FLANNEL-FWD";
/** kube-proxy marks packets it will masquerade itself (upstream skips them to avoid double NAT). */
export const KUBE_PROXY_MARK = "0x4000/0x4000";

/** Multicast per family, which `--ip-masq` leaves alone. */
const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;

const comment = (c: string) => `-m comment --comment "${c}"`;

/** The family of a CIDR text as iptables-save prints it (IPv6 has colons, IPv4 never). */
export function familyOf(cidr: string): 4 | 6 {
  return cidr.includes(":") ? 6 : 4;
}

/**
 * The masquerade rules for `network` (the whole overlay) and `subnet` (the own lease), in
 * upstream flannel's order:
 * 1. RETURN for packets kube-proxy marked for its own masquerade;
 * 2. RETURN own subnet → Network and 3. Network → own subnet (overlay traffic keeps its source);
 * 4. RETURN outside → own subnet (traffic arriving from elsewhere is not rewritten);
 * 5. MASQUERADE Network → anything but multicast (224.0.0.0/4, ff00::/8) (leaving the overlay);
 * 6. MASQUERADE outside → Network (the host itself talking into the overlay, so replies come
 *    back through it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { masqRuleSet } from "./rules.ts";
 *
 * const s = masqRuleSet("10.1.0.0/16", "10.1.15.0/24", true);
 * assert.equal(
 *   s.rules[4],
 *   '-s 10.1.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
 * );
 * const s6 = masqRuleSet("fc00::/48", "fc00:0:0:22::/64", false);
 * assert.equal(s6.family, 6);
 * assert.equal(
 *   s6.rules[4],
 *   '-s fc00::/48 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE',
 * );
 * ```
 */
export function masqRuleSet(network: string, subnet: string, randomFully: boolean): RuleSet {
  const c = comment("flanneld masq");
  const masq = randomFully ? "-j MASQUERADE --random-fully" : "-j MASQUERADE";
  const family = familyOf(network);
  return {
    name: "masq",
    family,
    table: "nat",
    chain: MASQ_CHAIN,
    hook: "POSTROUTING",
    jump: `${c} -j ${MASQ_CHAIN}`,
    rules: [
      `-m mark --mark ${KUBE_PROXY_MARK} ${c} -j RETURN`,
      `-s ${subnet} -d ${network} ${c} -j RETURN`,
      `-s ${network} -d ${subnet} ${c} -j RETURN`,
      `! -s ${network} -d ${subnet} ${c} -j RETURN`,
      `-s ${network} ! -d ${MULTICAST[family]} ${c} ${masq}`,
      `! -s ${network} -d ${network} ${c} ${masq}`,
    ],
  };
}

/**
 * The forward rules: accept forwarding from and to `network`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { forwardRuleSet } from "./rules.ts";
 *
 * assert.deepEqual(forwardRuleSet("10.1.0.0/16").rules, [
 *   '-s 10.1.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
 *   '-d 10.1.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
 * ]);
 * ```
 */
export function forwardRuleSet(network: string): RuleSet {
  const c = comment("flanneld forward");
  return {
    name: "forward",
    family: familyOf(network),
    table: "filter",
    chain: FORWARD_CHAIN,
    hook: "FORWARD",
    jump: `${c} -j ${FORWARD_CHAIN}`,
    rules: [`-s ${network} ${c} -j ACCEPT`, `-d ${network} ${c} -j ACCEPT`],
  };
}

/** One table of `iptables-save` output: its chains and rules (each `-A CHAIN …` line). */
export interface SavedTable {
  chains: Set<string>;
  /** Rules per chain, in order, without the `-A CHAIN ` prefix. */
  rules: Map<string, string[]>;
}

/** Parses `iptables-save` output into tables. Unknown lines are ignored. */
export function parseSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let cur: SavedTable | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (line.startsWith("*")) {
      cur = { chains: new Set(), rules: new Map() };
      tables.set(line.slice(1), cur);
    } else if (cur === null || line === "COMMIT" || line.startsWith("#")) {
      continue;
    } else if (line.startsWith(":")) {
      cur.chains.add(line.slice(1).split(" ")[0]);
    } else if (line.startsWith("-A ")) {
      const rest = line.slice(3);
      const sp = rest.indexOf(" ");
      const chain = sp < 0 ? rest : rest.slice(0, sp);
      const spec = sp < 0 ? "" : rest.slice(sp + 1);
      const list = cur.rules.get(chain) ?? [];
      list.push(spec);
      cur.rules.set(chain, list);
    }
  }
  return tables;
}

/** What differs between the installed state and a wanted rule set (empty = in place). */
export function driftOf(saved: Map<string, SavedTable>, want: RuleSet): string[] {
  const t = saved.get(want.table);
  const out: string[] = [];
  if (!t || !t.chains.has(want.chain)) {
    out.push(`chain ${want.chain} is missing`);
  } else {
    const have = t.rules.get(want.chain) ?? [];
    if (have.length !== want.rules.length || have.some((r, i) => r !== want.rules[i])) {
      out.push(
        `chain ${want.chain} holds ${have.length} rules that differ from the wanted ${want.rules.length}`,
      );
    }
  }
  const jumps = (t?.rules.get(want.hook) ?? []).filter((r) => r === want.jump).length;
  if (jumps === 0) out.push(`${want.hook} does not jump to ${want.chain}`);
  if (jumps > 1) out.push(`${want.hook} jumps to ${want.chain} ${jumps} times`);
  return out;
}

/**
 * The `iptables-restore --noflush` input that installs `wanted` over `saved` (the current
 * `iptables-save` output), or null when everything is already in place. Each table that needs a
 * change gets its flannel chains declared (created or emptied) and refilled, a jump inserted at
 * the top of the hook when there is none, and duplicate jumps deleted; nothing else is touched.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { forwardRuleSet, parseSave, restoreInput } from "./rules.ts";
 *
 * const input = restoreInput(parseSave("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"), [
 *   forwardRuleSet("10.1.0.0/16"),
 * ]);
 * assert.match(input!, /^-I FORWARD 1 -m comment --comment "flanneld forward" -j FLANNEL-FWD$/m);
 * ```
 */
export function restoreInput(
  saved: Map<string, SavedTable>,
  wanted: readonly RuleSet[],
): string | null {
  const byTable = new Map<string, RuleSet[]>();
  for (const w of wanted) {
    if (driftOf(saved, w).length === 0) continue;
    byTable.set(w.table, [...(byTable.get(w.table) ?? []), w]);
  }
  if (byTable.size === 0) return null;
  const out: string[] = [];
  for (const [table, sets] of byTable) {
    out.push(`*${table}`);
    for (const s of sets) out.push(`:${s.chain} - [0:0]`);
    for (const s of sets) {
      for (const r of s.rules) out.push(`-A ${s.chain} ${r}`);
      const jumps = (saved.get(table)?.rules.get(s.hook) ?? []).filter((r) => r === s.jump).length;
      if (jumps === 0) out.push(`-I ${s.hook} 1 ${s.jump}`);
      for (let i = 1; i < jumps; i++) out.push(`-D ${s.hook} ${s.jump}`);
    }
    out.push("COMMIT");
  }
  return out.join("\n") + "\n";
}
