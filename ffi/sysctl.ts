/** sysctl values through `/proc/sys` files (no `sysctl` process). */

/** The path of a sysctl under /proc/sys: `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. */
export function sysctlPath(name: string): string {
  // Interface names may contain dots (flannel.1), so callers with such names pass a path.
  return name.startsWith("/") ? name : `/proc/sys/${name.replaceAll(".", "/")}`;
}

/** Reads a sysctl, trimmed. */
export function readSysctl(name: string): string {
  return Deno.readTextFileSync(sysctlPath(name)).trim();
}

/** Writes a sysctl when it differs from `value`; returns true when it was changed. */
export function writeSysctl(name: string, value: string): boolean {
  const path = sysctlPath(name);
  if (readSysctl(path) === value) return false;
  Deno.writeTextFileSync(path, value + "\n");
  return true;
}
