/**
 * The files shipped in dist/ are exactly what the README shows, the cloud-config snippet carries
 * the same two units, and systemd accepts the unit (`systemd-analyze verify`, when installed).
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;
const read = (p: string) => Deno.readTextFileSync(`${ROOT}${p}`);

/** The README's fenced blocks whose first line is `firstLine`. */
function readmeBlocks(firstLine: string): string[] {
  const out: string[] = [];
  const re = /^```[a-z]*\n([\s\S]*?)^```$/gm;
  for (const m of read("README.md").matchAll(re)) {
    if (m[1].split("\n")[0] === firstLine) out.push(m[1]);
  }
  return out;
}

const FILES: [string, string][] = [
  ["dist/flanneld.service", "# /etc/systemd/system/flanneld.service"],
  ["dist/40-flannel.conf", "# /etc/systemd/system/docker.service.d/40-flannel.conf"],
  ["dist/cloud-config.yaml", "#cloud-config"],
];

Deno.test("README shows each dist/ file exactly once and byte for byte", async (t) => {
  for (const [file, first] of FILES) {
    await t.step(file, () => {
      const blocks = readmeBlocks(first);
      assert.equal(blocks.length, 1, `README blocks starting with ${first}`);
      assert.equal(blocks[0], read(file));
    });
  }
});

/** A `content: |` block of the cloud-config, de-indented. */
function contentAfter(yaml: string, name: string): string {
  const lines = yaml.split("\n");
  const at = lines.findIndex((l) => l.trim() === `- name: ${name}`);
  assert.ok(at >= 0, `no unit ${name} in cloud-config`);
  const start = lines.findIndex((l, i) => i > at && l.trim() === "content: |");
  const indent = lines[start].indexOf("content") + 2;
  const body: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l !== "" && !l.startsWith(" ".repeat(indent))) break;
    body.push(l.slice(indent));
  }
  while (body.at(-1) === "") body.pop();
  return body.join("\n") + "\n";
}

Deno.test("cloud-config carries the same flanneld unit and Docker drop-in", () => {
  const yaml = read("dist/cloud-config.yaml");
  const withoutPathLine = (f: string) => read(f).split("\n").slice(1).join("\n");
  assert.equal(contentAfter(yaml, "flanneld.service"), withoutPathLine("dist/flanneld.service"));
  assert.equal(contentAfter(yaml, "40-flannel.conf"), withoutPathLine("dist/40-flannel.conf"));
  assert.match(yaml, /^ {6}command: start$/m);
});

const systemdAnalyze = (() => {
  for (const p of ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]) {
    try {
      Deno.statSync(p);
      return p;
    } catch {
      // Not here.
    }
  }
  return null;
})();
if (systemdAnalyze === null) {
  console.warn("dist_test: skipping systemd-analyze verify: systemd-analyze is not installed");
}

Deno.test({
  name: "systemd-analyze verify accepts dist/flanneld.service",
  ignore: systemdAnalyze === null,
  fn: async () => {
    // verify insists that the programs it runs exist: /opt/bin/flannel becomes a stub under a
    // temp dir; nothing else of the unit changes.
    const dir = await Deno.makeTempDir({ prefix: "fl-unit-" });
    try {
      await Deno.mkdir(`${dir}/opt/bin`, { recursive: true });
      await Deno.writeTextFile(`${dir}/opt/bin/flannel`, "#!/bin/sh\n", { mode: 0o755 });
      const unit = read("dist/flanneld.service");
      assert.match(unit, /^ExecStart=\/usr\/bin\/env --block-signal=USR1 \/opt\/bin\/flannel /m);
      await Deno.writeTextFile(
        `${dir}/flanneld.service`,
        unit.replace(" /opt/bin/flannel ", ` ${dir}/opt/bin/flannel `),
      );
      const r = await new Deno.Command(systemdAnalyze!, {
        args: ["verify", `${dir}/flanneld.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, text);
      assert.equal(text.trim(), "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
