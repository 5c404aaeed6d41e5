/**
 * What every verb file shares: the request flag presets and the address family of an IP.
 *
 * @module
 */

import type { IP } from "../ip.ts";
import { AF_INET, AF_INET6, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from "./consts.ts";

/** A request the kernel acknowledges (errors come back as `NLMSG_ERROR`). */
export const ACK = NLM_F_REQUEST | NLM_F_ACK;
/** A dump request (multipart reply up to `NLMSG_DONE`). */
export const DUMP = NLM_F_REQUEST | NLM_F_DUMP;

/** The `AF_*` family of an address: `AF_INET` or `AF_INET6` (linux/socket.h). */
export function afOf(ip: IP): number {
  return ip.family === 4 ? AF_INET : AF_INET6;
}
