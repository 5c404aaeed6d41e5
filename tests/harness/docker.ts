/**
 * Real Docker (Debian's docker.io 20.10) inside a host namespace, for end-to-end tests.
 *
 * `dockerd` runs in the host's network namespace (`nsenter --net`, not `ip netns exec`, which
 * remounts /sys and hides the cgroup mounts) inside its own mount namespace (`unshare -m`) with
 * tmpfs over /run and /var/lib, so its containerd, sockets and state never meet the machine's;
 * data-root, exec-root, pidfile, API socket and the key file (`deprecated-key-path` in a
 * --config-file) all live under one temp dir. /etc/docker is never written. Its iptables stay on,
 * as shipped: it sets the FORWARD policy to DROP in the host namespace.
 *
 * The explicit paths matter: /usr/local/bin/docker on these machines is another CLI.
 */

import { type ExecResult, run } from "./netns.ts";

/** Debian's docker CLI and daemon. */
export const DOCKER = "/usr/bin/docker";
export const DOCKERD = "/usr/sbin/dockerd";
/** Where images built from Debian packages are cached between runs (outside the repository). */
export const CACHE_DIR = "/var/cache/flannel-tests";
/** The image every container uses: a busybox-static root filesystem. */
export const IMAGE = "flannel-test/busybox:1";

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Why Docker cannot run here (a skip reason), or null when it can. */
export function dockerUnavailable(): string | null {
  if (Deno.uid() !== 0) return "needs root";
  for (const p of [DOCKER, DOCKERD, "/usr/bin/containerd", "/usr/sbin/runc"]) {
    if (!exists(p)) return `${p} is missing (apt-get install docker.io)`;
  }
  for (const t of ["unshare", "nsenter", "tcpdump"]) {
    if (!["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"].some((d) => exists(d + t))) {
      return `${t} is missing`;
    }
  }
  if (!exists("/bin/busybox")) return "/bin/busybox is missing (apt-get install busybox-static)";
  return null;
}

/**
 * A tar of a root filesystem holding only a static busybox (what `docker import` needs: no
 * registry is reachable). Built once from Debian's busybox-static and cached in CACHE_DIR.
 */
export async function busyboxRootfsTar(): Promise<string> {
  const tar = `${CACHE_DIR}/busybox-rootfs.tar`;
  if (exists(tar)) return tar;
  const ldd = await run(["ldd", "/bin/busybox"]);
  if (!/not a dynamic executable/.test(ldd.stdout + ldd.stderr)) {
    throw new Error("/bin/busybox is dynamically linked: apt-get install busybox-static");
  }
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const root = await Deno.makeTempDir({ prefix: "fl-busybox-" });
  try {
    await Deno.mkdir(`${root}/bin`);
    await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
    await Deno.chmod(`${root}/bin/busybox`, 0o755);
    await Deno.symlink("busybox", `${root}/bin/sh`);
    const r = await run(["tar", "-C", root, "-cf", `${tar}.tmp`, "."]);
    if (r.code !== 0) throw new Error(`tar: ${r.stderr.trim()}`);
    await Deno.rename(`${tar}.tmp`, tar);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  return tar;
}

/** A dockerd running in a host namespace. */
export class Dockerd implements AsyncDisposable {
  readonly #dir: string;
  readonly #child: Deno.ChildProcess;
  readonly #log: Deno.FsFile;
  readonly #pipes: Promise<void>;
  #stopped = false;

  private constructor(
    dir: string,
    child: Deno.ChildProcess,
    log: Deno.FsFile,
    pipes: Promise<void>,
  ) {
    this.#dir = dir;
    this.#child = child;
    this.#log = log;
    this.#pipes = pipes;
  }

  /** The API socket. */
  get host(): string {
    return `unix://${this.#dir}/docker.sock`;
  }

  /**
   * Starts dockerd in namespace `ns` with `args` (e.g. `--bip`, `--mtu`, `--ip-masq`), state
   * under `dir` (created), and waits until its API answers.
   */
  static async start(ns: string, dir: string, args: string[]): Promise<Dockerd> {
    await Deno.mkdir(`${dir}/cli`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/daemon.json`,
      JSON.stringify({ "deprecated-key-path": `${dir}/key.json` }) + "\n",
    );
    const dockerd = [
      DOCKERD,
      `--data-root=${dir}/data`,
      `--exec-root=${dir}/exec`,
      `--pidfile=${dir}/docker.pid`,
      `-H`,
      `unix://${dir}/docker.sock`,
      "--storage-driver=vfs",
      `--config-file=${dir}/daemon.json`,
      ...args,
    ];
    const script = 'mount -t tmpfs none /run && mount -t tmpfs none /var/lib && exec "$@"';
    const log = await Deno.open(`${dir}/dockerd.log`, { create: true, append: true });
    const child = new Deno.Command("unshare", {
      args: [
        "-m",
        "--propagation",
        "private",
        "nsenter",
        `--net=/run/netns/${ns}`,
        "sh",
        "-c",
        script,
        "dockerd",
        ...dockerd,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // One writer at a time on the log file: stdout first, then stderr, each to its end.
    const pipes = Promise.all([
      child.stdout.pipeTo(log.writable, { preventClose: true }).catch(() => {}),
      child.stderr.pipeTo(new WritableStream({ write: (b) => void log.writeSync(b) }))
        .catch(() => {}),
    ]).then(() => {});
    const d = new Dockerd(dir, child, log, pipes);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await d.docker(["version", "--format", "{{.Server.Version}}"]);
      if (r.code === 0) return d;
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<false>((res) => setTimeout(() => res(false), 250)),
      ]);
      if (exited || Date.now() > deadline) {
        await d[Symbol.asyncDispose]();
        const text = await Deno.readTextFile(`${dir}/dockerd.log`).catch(() => "");
        throw new Error(
          `dockerd in ${ns} did not start: ${text.trim().split("\n").slice(-5).join("\n")}`,
        );
      }
    }
  }

  /** Runs the docker CLI against this daemon. */
  docker(args: string[]): Promise<ExecResult> {
    return run(["env", `DOCKER_CONFIG=${this.#dir}/cli`, DOCKER, "-H", this.host, ...args]);
  }

  /** Runs the docker CLI and returns stdout; throws with stderr on failure. */
  async dockerOk(args: string[]): Promise<string> {
    const r = await this.docker(args);
    if (r.code !== 0) throw new Error(`docker ${args.join(" ")}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Removes every container, stops dockerd (SIGKILL after 10 s) and what it left running. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const ids = (await this.docker(["ps", "-aq"])).stdout.split("\n").filter((l) => l !== "");
    if (ids.length > 0) await this.docker(["rm", "-f", ...ids]);
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 10_000);
    await this.#child.status;
    clearTimeout(timer);
    // containerd and its shims were started by this dockerd: their command lines name our dir.
    for (const pid of processesMentioning(this.#dir)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    // Only now can the output pipes end: containerd inherited them.
    await this.#pipes;
    try {
      this.#log.close();
    } catch {
      // Already closed.
    }
  }
}

/** Pids whose command line contains `text` (never this process). */
function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes(text)) out.push(pid);
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}
