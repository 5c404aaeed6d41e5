/**
 * Kernel tests need root (network namespaces, TUN devices, SO_*BUFFORCE). Without it they are
 * registered as ignored, with the reason in their name and a line on stderr, so a
 * non-root run says why instead of failing on EPERM.
 */

const uid = Deno.uid();

/** Why kernel tests cannot run here, or null as root. */
export const NOT_ROOT: string | null = uid === 0 ? null : `needs root, running as uid ${uid}`;

/** `Deno.test(name, fn)`, ignored with the reason when not root. */
export function rootTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  Deno.test({
    name: NOT_ROOT === null ? name : `${name} [skipped: ${NOT_ROOT}]`,
    ignore: NOT_ROOT !== null,
    fn,
  });
}

if (NOT_ROOT !== null) {
  console.error(`tests/kernel: skipping kernel tests (${NOT_ROOT}; run them as root)`);
}
