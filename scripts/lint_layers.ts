/**
 * The layer check: a `deno lint` plugin (listed in deno.json, so `deno lint`, `deno task ok` and
 * scripts/test.sh run it). It works on the parsed AST, so an import in a comment or a string is
 * not an import, and `import("./x.ts")` is. Rules, each reported as `layers/<rule>` at the
 * offending node with the file and line:
 *
 * - `ffi-only`: `Deno.dlopen` and `Deno.Unsafe*` (pointers, views, callbacks, fn pointers) appear
 *   only under `ffi/`.
 * - `etcd-client`: `etcd3` and `@grpc/grpc-js` are imported only under `lib/registry/`; tests and
 *   scripts may use them, but through the import map (`"etcd3"`), never a second `npm:` pin.
 * - `ffi-imports-lib`: nothing under `ffi/` imports `lib/` or `main.ts`.
 * - `downward`: a file imports only its own layer or lower ones. Highest first:
 *   `main.ts` → `lib/daemon.ts` → `lib/backend/**` → `lib/subnet/**`, `lib/registry/**` (and any
 *   other `lib/<folder>/`) → the basics `lib/*.ts` → `ffi/**`. `tests/` and `scripts/` may import
 *   anything.
 *
 * Paths are taken relative to the nearest directory above the file that holds a deno.json.
 */

/** One layer: its rank (higher imports lower) and a name for messages. */
interface Layer {
  readonly rank: number;
  readonly name: string;
}

/** The layer order, highest first; `null` for files outside the daemon (tests, scripts, docs). */
export function layerOf(rel: string): Layer | null {
  if (rel === "main.ts") return { rank: 6, name: "main.ts" };
  if (rel === "lib/daemon.ts") return { rank: 5, name: "lib/daemon.ts" };
  if (rel.startsWith("lib/backend/")) return { rank: 4, name: "lib/backend/**" };
  if (rel.startsWith("lib/subnet/") || rel.startsWith("lib/registry/")) {
    return { rank: 3, name: "lib/subnet/**, lib/registry/**" };
  }
  // A new service folder (firewall, health, …) sits beside the subnet manager and the registry.
  if (/^lib\/[^/]+\//.test(rel)) return { rank: 3, name: `lib/${rel.split("/")[1]}/**` };
  if (rel.startsWith("lib/")) return { rank: 2, name: "lib/*.ts basics" };
  if (rel.startsWith("ffi/")) return { rank: 1, name: "ffi/**" };
  return null;
}

const ETCD_PACKAGES = ["etcd3", "@grpc/grpc-js"];
const UNSAFE = /^(dlopen|Unsafe[A-Za-z]*)$/;

/** The package a bare or `npm:` specifier names (`npm:@grpc/grpc-js@1.2/x` → `@grpc/grpc-js`). */
function packageOf(spec: string): { name: string; pinned: boolean } | null {
  const pinned = spec.startsWith("npm:");
  const s = pinned ? spec.slice(4).replace(/^\//, "") : spec;
  if (/^(\.|\/|[a-z]+:)/.test(s)) return null; // relative, absolute or another scheme
  const parts = s.split("/");
  const name = s.startsWith("@") ? `${parts[0]}/${parts[1] ?? ""}` : parts[0];
  return { name: name.replace(/(.)@.*$/, "$1"), pinned };
}

const rootCache = new Map<string, string | null>();

/** The nearest directory at or above `dir` that holds a deno.json, or null. */
function projectRoot(dir: string): string | null {
  const hit = rootCache.get(dir);
  if (hit !== undefined) return hit;
  let found: string | null = null;
  try {
    Deno.statSync(`${dir}/deno.json`);
    found = dir;
  } catch {
    const up = dir.replace(/\/[^/]*$/, "");
    found = up !== dir && up !== "" ? projectRoot(up) : null;
  }
  rootCache.set(dir, found);
  return found;
}

/** `path` relative to its project root, with `/` separators; null when there is no root. */
function relPath(path: string): { root: string; rel: string } | null {
  const file = path.replaceAll("\\", "/");
  const root = projectRoot(file.replace(/\/[^/]*$/, ""));
  if (root === null) return null;
  return { root, rel: file.slice(root.length + 1) };
}

/** Normalises `a/b/../c/./d` to `a/c/d`; null when it climbs above the start. */
function normalise(path: string): string | null {
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(seg);
  }
  return out.join("/");
}

/** What one specifier in file `rel` breaks, as rule + message; empty when nothing. */
export function checkImport(rel: string, spec: string): { rule: string; message: string }[] {
  const from = layerOf(rel);
  const inTests = rel.startsWith("tests/") || rel.startsWith("scripts/");
  const pkg = packageOf(spec);
  if (pkg !== null) {
    if (!ETCD_PACKAGES.includes(pkg.name)) return [];
    if (rel.startsWith("lib/registry/")) return [];
    if (inTests && !pkg.pinned) return [];
    return [{
      rule: "etcd-client",
      message: inTests
        ? `${rel} pins ${spec}: use the import map's "${pkg.name}" (one version, in deno.json)`
        : `${rel} imports ${pkg.name}: only lib/registry/ may talk to etcd's client`,
    }];
  }
  if (!spec.startsWith(".")) return [];
  const target = normalise(`${rel.replace(/[^/]*$/, "")}${spec}`);
  if (target === null || from === null) return [];
  const to = layerOf(target);
  if (to === null) {
    return target.startsWith("tests/") || target.startsWith("scripts/")
      ? [{
        rule: "downward",
        message: `${rel} imports ${target}: daemon code never imports tests/ or scripts/`,
      }]
      : [];
  }
  if (from.rank === 1 && to.rank > 1) {
    return [{
      rule: "ffi-imports-lib",
      message: `${rel} imports ${target}: ffi/ never imports lib/`,
    }];
  }
  if (to.rank > from.rank) {
    return [{
      rule: "downward",
      message:
        `${rel} (layer ${from.name}) imports ${target} (layer ${to.name}): imports point downward only`,
    }];
  }
  return [];
}

// deno-lint-ignore no-explicit-any
type Node = any;

/** Makes a rule that runs `visit` with the file's project-relative path. */
function rule(
  visit: (rel: string, report: (node: Node, message: string) => void) => Deno.lint.LintVisitor,
): Deno.lint.Rule {
  return {
    create(context) {
      const where = relPath(context.filename);
      if (where === null) return {};
      return visit(where.rel, (node, message) => context.report({ node, message }));
    },
  };
}

/** Reports each import specifier of a file through `onSpec`. */
function importVisitor(onSpec: (node: Node, spec: string) => void): Deno.lint.LintVisitor {
  const literal = (node: Node, src: Node) => {
    if (src?.type === "Literal" && typeof src.value === "string") onSpec(node, src.value);
  };
  return {
    ImportDeclaration: (n: Node) => literal(n, n.source),
    ExportAllDeclaration: (n: Node) => literal(n, n.source),
    ExportNamedDeclaration: (n: Node) => n.source && literal(n, n.source),
    ImportExpression: (n: Node) => literal(n, n.source),
    TSImportType: (n: Node) => literal(n, n.argument?.literal ?? n.argument),
  };
}

function importRule(which: string): Deno.lint.Rule {
  return rule((rel, report) =>
    importVisitor((node, spec) => {
      for (const v of checkImport(rel, spec)) if (v.rule === which) report(node, v.message);
    })
  );
}

const plugin: Deno.lint.Plugin = {
  name: "layers",
  rules: {
    "ffi-only": rule((rel, report) => {
      if (rel.startsWith("ffi/")) return {};
      const bad = (node: Node, name: string) =>
        report(node, `${rel} uses Deno.${name}: only ffi/ touches pointers and dlopen`);
      const isDeno = (n: Node) => n?.type === "Identifier" && n.name === "Deno";
      return {
        MemberExpression(n: Node) {
          if (!isDeno(n.object)) return;
          const p = n.property;
          const name = p?.type === "Identifier" && !n.computed
            ? p.name
            : p?.type === "Literal"
            ? String(p.value)
            : "";
          if (UNSAFE.test(name)) bad(n, name);
        },
        TSQualifiedName(n: Node) {
          if (isDeno(n.left) && UNSAFE.test(n.right?.name ?? "")) bad(n, n.right.name);
        },
        VariableDeclarator(n: Node) {
          if (!isDeno(n.init) || n.id?.type !== "ObjectPattern") return;
          for (const p of n.id.properties) {
            const name = p.key?.type === "Identifier" ? p.key.name : String(p.key?.value ?? "");
            if (UNSAFE.test(name)) bad(p, name);
          }
        },
      };
    }),
    "etcd-client": importRule("etcd-client"),
    "ffi-imports-lib": importRule("ffi-imports-lib"),
    "downward": importRule("downward"),
  },
};

export default plugin;
