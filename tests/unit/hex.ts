/** Hex helpers for the netlink tests (golden bytes and captured fixtures). */

/** Hex of bytes, for tests and debug logs. */
export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
/** Bytes of a hex string (whitespace ignored). */
export function fromHex(s: string): Uint8Array<ArrayBuffer> {
  const t = s.replace(/\s+/g, "");
  if (t.length % 2 !== 0 || /[^0-9a-fA-F]/.test(t)) throw new TypeError("Invalid hex string");
  const b = new Uint8Array(t.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return b;
}
