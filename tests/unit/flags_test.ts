import assert from "node:assert/strict";
import { envName, FlagSet, parseBool, parseInt0 } from "../../lib/flags.ts";

function set() {
  const fs = new FlagSet("prog");
  const s = fs.string("name", "def", "a string");
  const b = fs.bool("b", false, "a bool");
  const n = fs.int("n", 5, "an int", { min: -10, max: 1000 });
  const l = fs.list("l", ["d"], "a list", (v) => v.includes(" ") ? "no spaces" : null);
  return { fs, s, b, n, l };
}

Deno.test("FlagSet.parse() accepts every Go syntax for values", async (t) => {
  const rows: [string, string[], string][] = [
    ["-name=value", ["-name=x"], "x"],
    ["--name=value", ["--name=x"], "x"],
    ["-name value", ["-name", "x"], "x"],
    ["--name value", ["--name", "x"], "x"],
    ["an empty value", ["-name="], ""],
    ["a value that looks like a flag", ["-name", "-b"], "-b"],
    ["a value holding =", ["-name=a=b"], "a=b"],
    ["the last occurrence wins", ["-name=x", "-name=y"], "y"],
  ];
  for (const [name, argv, want] of rows) {
    await t.step(name, () => {
      const { fs, s, b } = set();
      assert.deepEqual(fs.parse(argv), { kind: "ok", args: [] });
      assert.equal(s.value, want);
      assert.equal(s.setOnCommandLine, true);
      assert.equal(b.value, false);
    });
  }
});

Deno.test("FlagSet.parse() takes a bool alone or with any strconv.ParseBool form", async (t) => {
  const rows: [string[], boolean][] = [
    [["-b"], true],
    [["--b"], true],
    ...["1", "t", "T", "TRUE", "true", "True"].map((v): [string[], boolean] => [[`-b=${v}`], true]),
    ...["0", "f", "F", "FALSE", "false", "False"].map((v): [string[], boolean] => [
      [`--b=${v}`],
      false,
    ]),
  ];
  for (const [argv, want] of rows) {
    await t.step(argv.join(" "), () => {
      const { fs, b } = set();
      if (!want) b.value = true; // so that =false visibly changes it
      assert.deepEqual(fs.parse(argv), { kind: "ok", args: [] });
      assert.equal(b.value, want);
    });
  }
});

Deno.test("FlagSet.parse() stops at --, at the first non-flag and at a bare -", async (t) => {
  const rows: [string, string[], string, string[]][] = [
    ["-- is consumed", ["-name=a", "--", "-name=b"], "a", ["-name=b"]],
    ["a non-flag ends the flags", ["-name=a", "pos", "-name=b"], "a", ["pos", "-name=b"]],
    ["- alone is a non-flag", ["-", "-name=b"], "def", ["-", "-name=b"]],
    ["a bool does not take the next argument", ["-b", "false", "-name=b"], "def", [
      "false",
      "-name=b",
    ]],
    ["only the first -- is consumed", ["--", "--"], "def", ["--"]],
  ];
  for (const [name, argv, want, args] of rows) {
    await t.step(name, () => {
      const { fs, s } = set();
      assert.deepEqual(fs.parse(argv), { kind: "ok", args });
      assert.equal(s.value, want);
    });
  }
});

Deno.test("FlagSet.parse() reports errors as Go's flag package words them", async (t) => {
  const rows: [string[], string][] = [
    [["-nope"], "flag provided but not defined: -nope"],
    [["--nope=1"], "flag provided but not defined: -nope"],
    [["---name=x"], "bad flag syntax: ---name=x"],
    [["-=x"], "bad flag syntax: -=x"],
    [["--=x"], "bad flag syntax: --=x"],
    [["-name"], "flag needs an argument: -name"],
    [["-b=yes"], 'invalid boolean value "yes" for -b: parse error'],
    [["-b="], 'invalid boolean value "" for -b: parse error'],
    [["-n=abc"], 'invalid value "abc" for flag -n: parse error'],
    [["-n", "1.5"], 'invalid value "1.5" for flag -n: parse error'],
    [["-n=1001"], 'invalid value "1001" for flag -n: must be between -10 and 1000'],
    [["-n=-11"], 'invalid value "-11" for flag -n: must be between -10 and 1000'],
    [["-l=a b"], 'invalid value "a b" for flag -l: no spaces'],
  ];
  for (const [argv, message] of rows) {
    await t.step(argv.join(" "), () => {
      assert.deepEqual(set().fs.parse(argv), { kind: "error", message });
    });
  }
});

Deno.test("FlagSet.parse() answers -h and -help unless the set defines them", async (t) => {
  for (const arg of ["-h", "--h", "-help", "--help", "-help=false"]) {
    await t.step(arg, () => {
      assert.deepEqual(set().fs.parse(["-name=x", arg, "-nope"]), { kind: "help" });
    });
  }
  await t.step("a defined help flag is an ordinary bool", () => {
    const fs = new FlagSet();
    const help = fs.bool("help", false, "print this message");
    assert.deepEqual(fs.parse(["--help"]), { kind: "ok", args: [] });
    assert.equal(help.value, true);
    assert.deepEqual(fs.parse(["-h"]), { kind: "help" });
  });
});

Deno.test("FlagSet list flags repeat, replacing the default on first use", () => {
  const a = set();
  assert.deepEqual(a.fs.parse([]), { kind: "ok", args: [] });
  assert.deepEqual(a.l.value, ["d"]);
  const b = set();
  assert.deepEqual(b.fs.parse(["-l=x", "--l", "y,z", "-l="]), { kind: "ok", args: [] });
  assert.deepEqual(b.l.value, ["x", "y,z", ""]); // the command line never splits on commas
});

Deno.test("FlagSet.parse() reads ints as strconv.ParseInt(s, 0, 64) does", async (t) => {
  const rows: [string, number | null][] = [
    ["0", 0],
    ["42", 42],
    ["-7", -7],
    ["+7", 7],
    ["-0", 0],
    ["0x1F", 31],
    ["0X1f", 31],
    ["0o17", 15],
    ["017", 15],
    ["0b101", 5],
    ["1_000", 1000],
    ["0x_ff", 255],
    ["9007199254740991", 9007199254740991],
    ["9007199254740992", null],
    ["", null],
    [" 1", null],
    ["1.0", null],
    ["1e3", null],
    ["08", null],
    ["0x", null],
    ["1__0", null],
    ["1_", null],
    ["_1", null],
    ["--1", null],
    ["abc", null],
  ];
  for (const [text, want] of rows) {
    await t.step(JSON.stringify(text), () => {
      const got = parseInt0(text);
      assert.ok(Object.is(got, want), `got ${got}`);
    });
  }
});

Deno.test("parseBool() accepts exactly Go's forms", () => {
  for (const s of ["1", "t", "T", "TRUE", "true", "True"]) assert.equal(parseBool(s), true, s);
  for (const s of ["0", "f", "F", "FALSE", "false", "False"]) assert.equal(parseBool(s), false, s);
  for (const s of ["", "yes", "no", "tRUE", "on", " true", "2"]) {
    assert.equal(parseBool(s), null, s);
  }
});

Deno.test("FlagSet.applyEnv() fills unset flags from PREFIX_NAME", async (t) => {
  await t.step("every kind, with - mapped to _", () => {
    const fs = new FlagSet();
    const s = fs.string("etcd-prefix", "/a", "");
    const b = fs.bool("ip-masq", false, "");
    const n = fs.int("renew-margin", 60, "", { min: 1, max: 1439 });
    const l = fs.list("iface", [], "");
    assert.deepEqual(fs.parse([]), { kind: "ok", args: [] });
    assert.equal(
      fs.applyEnv({
        FLANNELD_ETCD_PREFIX: "/b",
        FLANNELD_IP_MASQ: "true",
        FLANNELD_RENEW_MARGIN: "30",
        FLANNELD_IFACE: "eth0, 10.0.0.1,,eth2",
        FLANNELD_UNRELATED: "x",
      }),
      null,
    );
    assert.equal(s.value, "/b");
    assert.equal(b.value, true);
    assert.equal(n.value, 30);
    assert.deepEqual(l.value, ["eth0", "10.0.0.1", "eth2"]);
    assert.equal(s.setOnCommandLine, false);
  });
  await t.step("the command line wins and empty variables are ignored", () => {
    const { fs, s, b, n, l } = set();
    assert.deepEqual(fs.parse(["-name=cli", "-l=cli"]), { kind: "ok", args: [] });
    assert.equal(fs.applyEnv({ X_NAME: "env", X_L: "e1,e2", X_B: "", X_N: "7" }, "X_"), null);
    assert.equal(s.value, "cli");
    assert.deepEqual(l.value, ["cli"]);
    assert.equal(b.value, false);
    assert.equal(n.value, 7);
  });
  await t.step("a bad value names the variable and the flag", async (t) => {
    const rows: [Record<string, string>, string][] = [
      [
        { FLANNELD_N: "x" },
        'invalid value "x" for flag -n from environment variable FLANNELD_N: parse error',
      ],
      [
        { FLANNELD_N: "2000" },
        'invalid value "2000" for flag -n from environment variable FLANNELD_N: ' +
        "must be between -10 and 1000",
      ],
      [
        { FLANNELD_B: "yes" },
        'invalid value "yes" for flag -b from environment variable FLANNELD_B: parse error',
      ],
      [
        { FLANNELD_L: "ok,not ok" },
        'invalid value "not ok" for flag -l from environment variable FLANNELD_L: no spaces',
      ],
    ];
    for (const [env, message] of rows) {
      await t.step(Object.keys(env)[0], () => {
        const { fs } = set();
        fs.parse([]);
        assert.equal(fs.applyEnv(env), message);
      });
    }
  });
});

Deno.test("envName() upper-cases and maps - to _", () => {
  assert.equal(envName("FLANNELD_", "etcd-endpoints"), "FLANNELD_ETCD_ENDPOINTS");
  assert.equal(envName("FLANNELD_", "log_dir"), "FLANNELD_LOG_DIR");
  assert.equal(envName("FLANNELD_", "v"), "FLANNELD_V");
});

Deno.test("FlagSet.usage() prints defaults as Go's flag.PrintDefaults", () => {
  const fs = new FlagSet("prog");
  fs.string("etcd-prefix", "/coreos.com/network", "etcd prefix");
  fs.string("empty", "", "no default shown");
  fs.bool("b", false, "short bool");
  fs.bool("on", true, "a bool that defaults to true");
  fs.int("v", 0, "log level for V logs");
  fs.int("margin", 60, "minutes");
  fs.list("iface", [], "interface, repeatable");
  fs.list("two", ["a", "b"], "with defaults");
  fs.string("file", "/x", "read from `path`");
  assert.equal(
    fs.usage(),
    [
      "Usage: prog [OPTION]...",
      "  -b\tshort bool",
      "  -empty string",
      "    \tno default shown",
      "  -etcd-prefix string",
      '    \tetcd prefix (default "/coreos.com/network")',
      "  -file path",
      '    \tread from path (default "/x")',
      "  -iface value",
      "    \tinterface, repeatable",
      "  -margin int",
      "    \tminutes (default 60)",
      "  -on",
      "    \ta bool that defaults to true (default true)",
      "  -two value",
      "    \twith defaults (default [a b])",
      "  -v int",
      "    \tlog level for V logs",
    ].join("\n"),
  );
});

Deno.test("FlagSet refuses to define a flag twice", () => {
  const fs = new FlagSet();
  fs.string("x", "", "");
  assert.throws(() => fs.bool("x", false, ""), { message: "Flag redefined: x" });
});
