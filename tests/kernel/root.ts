/**
 * Kernel tests need root (network namespaces, TUN devices, SO_*BUFFORCE). Without it they are
 * registered as ignored, with the reason in their name and a line on stderr, so a non-root run
 * says why instead of failing on EPERM. Use as `Deno.test(asRoot("name"), fn)`: the options form
 * keeps the test's location in its own file.
 */

const uid = Deno.uid();

/** Why kernel tests cannot run here, or null as root. */
export const NOT_ROOT: string | null = uid === 0 ? null : `needs root, running as uid ${uid}`;

/** Test options for `name`: ignored, with the reason appended, when not root. */
export function asRoot(name: string): { name: string; ignore: boolean } {
  return NOT_ROOT === null
    ? { name, ignore: false }
    : { name: `${name} [skipped: ${NOT_ROOT}]`, ignore: true };
}

if (NOT_ROOT !== null) {
  console.error(`tests/kernel: skipping kernel tests (${NOT_ROOT}; run them as root)`);
}
