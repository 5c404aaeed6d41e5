/**
 * A command-line parser compatible with Go's `flag` package, plus flannel's environment overlay.
 *
 * Syntax, as Go: `-name=value`, `--name=value`, `-name value` (not for bools), a bool alone or
 * `-name=true|false`; `--` ends the flags and so does the first non-flag argument; `-h`/`-help`
 * ask for help unless a flag of that name is defined. Usage text follows `flag.PrintDefaults`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const fs = new FlagSet();
 * const prefix = fs.string("etcd-prefix", "/coreos.com/network", "etcd prefix");
 * const v = fs.int("v", 0, "log level");
 * assert.deepEqual(fs.parse(["--etcd-prefix=/x", "-v", "2", "rest"]), { kind: "ok", args: ["rest"] });
 * assert.equal(prefix.value, "/x");
 * assert.equal(fs.applyEnv({ FLANNELD_V: "5" }), null); // -v was given: the command line wins
 * assert.equal(v.value, 2);
 * ```
 */

/** A flag after definition; `value` holds the default until a parse or the env overlay sets it. */
export interface Flag<T> {
  readonly name: string;
  readonly usage: string;
  readonly defaultValue: T;
  value: T;
  /** Set by the command line (not by the environment). */
  readonly setOnCommandLine: boolean;
}

/** The outcome of {@link FlagSet.parse}. `args` are the arguments left after the flags. */
export type FlagParseResult =
  | { readonly kind: "ok"; readonly args: string[] }
  | { readonly kind: "help" }
  | { readonly kind: "error"; readonly message: string };

/** Checks a parsed value; returns the problem (`"must be between 1 and 9"`) or null. */
export type Validator<T> = (value: T) => string | null;

type Kind = "string" | "bool" | "int" | "list";

interface Entry {
  flag: Flag<unknown> & { setOnCommandLine: boolean };
  kind: Kind;
  /** Parses one textual value (one element for lists); returns the value or a problem. */
  convert(text: string): { ok: true; value: unknown } | { ok: false; problem: string };
  /** Lists: the command line replaced the default already. */
  listTouched: boolean;
}

/** A set of flags, parsed together (Go's `flag.FlagSet`). */
export class FlagSet {
  readonly #flags = new Map<string, Entry>();

  /** @param name the program name used in the usage header. */
  constructor(readonly name = "flanneld") {}

  /** Defines a string flag. */
  string(name: string, def: string, usage: string, validate?: Validator<string>): Flag<string> {
    return this.#define<string>(name, "string", def, usage, (t) => check(t, validate));
  }

  /** Defines a bool flag; accepts Go's `strconv.ParseBool` forms. */
  bool(name: string, def: boolean, usage: string): Flag<boolean> {
    return this.#define<boolean>(name, "bool", def, usage, (t) => {
      const b = parseBool(t);
      return b === null ? { ok: false, problem: "parse error" } : { ok: true, value: b };
    });
  }

  /** Defines an int flag (Go `strconv.ParseInt(s, 0, 64)` syntax) with inclusive bounds. */
  int(
    name: string,
    def: number,
    usage: string,
    range: { min?: number; max?: number } = {},
  ): Flag<number> {
    const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = range;
    return this.#define<number>(name, "int", def, usage, (t) => {
      const n = parseInt0(t);
      if (n === null) return { ok: false, problem: "parse error" };
      if (n < min || n > max) return { ok: false, problem: `must be between ${min} and ${max}` };
      return { ok: true, value: n };
    });
  }

  /**
   * Defines a repeatable string flag: each occurrence on the command line appends one element
   * (the first one replaces the default); from the environment the value is comma-separated.
   */
  list(
    name: string,
    def: string[],
    usage: string,
    validate?: Validator<string>,
  ): Flag<string[]> {
    return this.#define<string[]>(name, "list", def, usage, (t) => check(t, validate));
  }

  #define<T>(
    name: string,
    kind: Kind,
    def: T,
    usage: string,
    convert: Entry["convert"],
  ): Flag<T> {
    if (this.#flags.has(name)) throw new Error(`Flag redefined: ${name}`);
    const flag = {
      name,
      usage,
      defaultValue: def,
      value: Array.isArray(def) ? [...def] as T : def,
      setOnCommandLine: false,
    };
    this.#flags.set(name, { flag, kind, convert, listTouched: false });
    return flag;
  }

  /** Parses `argv` (without the program name). Values of flags seen are stored in the flags. */
  parse(argv: readonly string[]): FlagParseResult {
    let i = 0;
    while (i < argv.length) {
      const arg = argv[i];
      if (arg.length < 2 || arg[0] !== "-") break; // "-" alone and non-flags end the flags
      let dashes = 1;
      if (arg[1] === "-") {
        dashes = 2;
        if (arg.length === 2) { // "--" ends the flags and is consumed
          i++;
          break;
        }
      }
      i++;
      let name = arg.slice(dashes);
      if (name.length === 0 || name[0] === "-" || name[0] === "=") {
        return { kind: "error", message: `bad flag syntax: ${arg}` };
      }
      let value: string | null = null;
      const eq = name.indexOf("=");
      if (eq >= 0) {
        value = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      const entry = this.#flags.get(name);
      if (!entry) {
        if (name === "help" || name === "h") return { kind: "help" };
        return { kind: "error", message: `flag provided but not defined: -${name}` };
      }
      if (entry.kind === "bool") {
        if (value === null) value = "true";
        const r = entry.convert(value);
        if (!r.ok) {
          return {
            kind: "error",
            message: `invalid boolean value ${quote(value)} for -${name}: ${r.problem}`,
          };
        }
        entry.flag.value = r.value;
      } else {
        if (value === null) {
          if (i >= argv.length) {
            return { kind: "error", message: `flag needs an argument: -${name}` };
          }
          value = argv[i++];
        }
        const r = entry.convert(value);
        if (!r.ok) {
          return {
            kind: "error",
            message: `invalid value ${quote(value)} for flag -${name}: ${r.problem}`,
          };
        }
        if (entry.kind === "list") {
          const prev = entry.listTouched ? entry.flag.value as string[] : [];
          entry.flag.value = [...prev, r.value as string];
          entry.listTouched = true;
        } else {
          entry.flag.value = r.value;
        }
      }
      entry.flag.setOnCommandLine = true;
    }
    return { kind: "ok", args: argv.slice(i) };
  }

  /**
   * Applies `<prefix><NAME>` (upper case, `-` → `_`) to every flag the command line did not set,
   * ignoring empty variables. List flags split the value on commas. Returns an error message
   * naming the variable, or null.
   */
  applyEnv(env: Readonly<Record<string, string | undefined>>, prefix = "FLANNELD_"): string | null {
    for (const entry of this.#flags.values()) {
      if (entry.flag.setOnCommandLine) continue;
      const varName = envName(prefix, entry.flag.name);
      const text = env[varName];
      if (text === undefined || text === "") continue;
      const parts = entry.kind === "list"
        ? text.split(",").map((s) => s.trim()).filter((s) => s !== "")
        : [text];
      const values: unknown[] = [];
      for (const part of parts) {
        const r = entry.convert(part);
        if (!r.ok) {
          return `invalid value ${quote(part)} for flag -${entry.flag.name} from environment ` +
            `variable ${varName}: ${r.problem}`;
        }
        values.push(r.value);
      }
      entry.flag.value = entry.kind === "list" ? values : values[0];
    }
    return null;
  }

  /** The flag defaults as Go's `flag.PrintDefaults` prints them, sorted by name, no final newline. */
  defaults(): string {
    const names = [...this.#flags.keys()].sort();
    const lines: string[] = [];
    for (const n of names) {
      const { flag, kind } = this.#flags.get(n)!;
      const { typeName, usage } = unquoteUsage(flag.usage, kind);
      let line = `  -${n}`;
      if (typeName) line += ` ${typeName}`;
      line += line.length <= 4 ? "\t" : "\n    \t";
      line += usage.replaceAll("\n", "\n    \t");
      const def = formatDefault(flag.defaultValue, kind);
      if (def !== null) line += ` (default ${def})`;
      lines.push(line);
    }
    return lines.join("\n");
  }

  /** The full help text: a usage header and {@link defaults}, no final newline. */
  usage(): string {
    return `Usage: ${this.name} [OPTION]...\n${this.defaults()}`;
  }
}

/** The environment variable for a flag: `FLANNELD_ETCD_ENDPOINTS` for `etcd-endpoints`. */
export function envName(prefix: string, flagName: string): string {
  return prefix + flagName.toUpperCase().replaceAll("-", "_");
}

/** Go's `strconv.ParseBool`; null when `s` is none of its forms. */
export function parseBool(s: string): boolean | null {
  switch (s) {
    case "1":
    case "t":
    case "T":
    case "TRUE":
    case "true":
    case "True":
      return true;
    case "0":
    case "f":
    case "F":
    case "FALSE":
    case "false":
    case "False":
      return false;
    default:
      return null;
  }
}

/**
 * Go's `strconv.ParseInt(s, 0, 64)` limited to safe integers: optional sign, `0x`/`0o`/`0b`
 * prefixes, a leading `0` for octal, `_` between digits. Null when invalid.
 */
export function parseInt0(s: string): number | null {
  const m = /^([+-]?)(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7_]*|[1-9][0-9_]*)$/.exec(s);
  if (!m || /__|_$/.test(m[2])) return null;
  let body = m[2].replaceAll("_", "");
  let base = 10;
  if (/^0[xX]/.test(body)) [base, body] = [16, body.slice(2)];
  else if (/^0[oO]/.test(body)) [base, body] = [8, body.slice(2)];
  else if (/^0[bB]/.test(body)) [base, body] = [2, body.slice(2)];
  else if (body.length > 1 && body[0] === "0") [base, body] = [8, body.slice(1)];
  const n = parseInt(body, base);
  if (!Number.isSafeInteger(n)) return null;
  return m[1] === "-" && n !== 0 ? -n : n;
}

function check(
  text: string,
  validate?: Validator<string>,
): { ok: true; value: string } | { ok: false; problem: string } {
  const problem = validate?.(text) ?? null;
  return problem === null ? { ok: true, value: text } : { ok: false, problem };
}

/** Go's `%q` for the strings flag values normally are. */
function quote(s: string): string {
  return JSON.stringify(s);
}

/** Go's `flag.UnquoteUsage`: a `backquoted` word in the usage names the value. */
function unquoteUsage(usage: string, kind: Kind): { typeName: string; usage: string } {
  const m = /`([^`]*)`/.exec(usage);
  if (m) return { typeName: m[1], usage: usage.replace(m[0], m[1]) };
  const typeName = { string: "string", bool: "", int: "int", list: "value" }[kind];
  return { typeName, usage };
}

/** The `(default …)` text, or null for a zero value (Go hides those). */
function formatDefault(def: unknown, kind: Kind): string | null {
  switch (kind) {
    case "string":
      return def === "" ? null : quote(def as string);
    case "bool":
      return def ? "true" : null;
    case "int":
      return def === 0 ? null : String(def);
    case "list": {
      const a = def as string[];
      return a.length === 0 ? null : `[${a.join(" ")}]`;
    }
  }
}
