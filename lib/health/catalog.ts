/**
 * The daemon's metrics, one registry per process (as a Prometheus client's default registry):
 * every module that has something to count imports its handle from here, and `/metrics`
 * renders {@link registry}. This module imports nothing of the daemon, so any layer may use it.
 *
 * Names follow Prometheus conventions: `flannel_` prefix, `_total` for counters, base units
 * (seconds, bytes).
 */

import { Metrics } from "./metrics.ts";

/** The process's registry, rendered by `/metrics`. */
export const registry: Metrics = new Metrics();

/** `flannel_build_info{version,deno,v8,typescript} 1`. */
export const buildInfo = registry.gauge(
  "flannel_build_info",
  "Build information of this flannel daemon; the value is always 1.",
);

/** Expiry of the own lease, Unix seconds (0 = no lease held, or a reservation). */
export const leaseExpiry = registry.gauge(
  "flannel_lease_expiry_timestamp_seconds",
  "When the own subnet lease expires, in Unix seconds (0 while no lease is held).",
);
/** 1 while the daemon holds its lease. */
export const leaseHeld = registry.gauge(
  "flannel_lease_held",
  "1 while the daemon holds a subnet lease, else 0.",
);
/** Successful renewals of the own lease. */
export const leaseRenewals = registry.counter(
  "flannel_lease_renewals_total",
  "Successful renewals of the own subnet lease.",
);
/** Failed renewal attempts (each is retried). */
export const leaseRenewalFailures = registry.counter(
  "flannel_lease_renewal_failures_total",
  "Failed attempts to renew the own subnet lease.",
);

/** etcd requests that failed, by operation (`get`, `list`, `create`, ...). */
export const etcdErrors = registry.counter(
  "flannel_etcd_errors_total",
  "etcd requests that failed, by operation.",
);
/** Watch streams re-established after a failure. */
export const etcdReconnects = registry.counter(
  "flannel_etcd_reconnects_total",
  "etcd watch streams re-established after they failed.",
);
/** The last time etcd answered a request or delivered a watch response, Unix seconds. */
export const etcdLastContact = registry.gauge(
  "flannel_etcd_last_success_timestamp_seconds",
  "When etcd last answered a request or delivered a watch response, in Unix seconds.",
);
/** Events from etcd watches (subnets, own lease, config), by type (`put`, `delete`, ...). */
export const watchEvents = registry.counter(
  "flannel_watch_events_total",
  "Events received from etcd watches (subnet leases, own lease, config), by type.",
);

/** Peers whose leases are installed in the kernel now. */
export const peersInUse = registry.gauge(
  "flannel_peers",
  "Peer leases currently installed by the backend.",
);
/** Peer leases the backend refused (bad data, foreign backend type, own lease...), by reason. */
export const peersRejected = registry.counter(
  "flannel_peers_rejected_total",
  "Peer leases the backend refused to install, by reason.",
);

/** Kernel changes made, by kind (route, neigh, fdb, firewall, blackhole_route) and op. */
export const kernelChanges = registry.counter(
  "flannel_kernel_changes_total",
  "Changes made to the kernel (routes, neighbours, FDB entries, firewall rule sets), by kind and op.",
);
/** Kernel changes that failed, by kind and op. */
export const kernelFailures = registry.counter(
  "flannel_kernel_failures_total",
  "Kernel changes that failed, by kind and op.",
);
/** Periodic re-checks of the kernel state, by what was checked (`peers`, `firewall`). */
export const resyncs = registry.counter(
  "flannel_resyncs_total",
  "Periodic re-checks of what the daemon installed, by what was checked.",
);
/** Re-checks that found the kernel different from what was installed, by what. */
export const configDrift = registry.counter(
  "flannel_config_drift_total",
  "Re-checks that found installed state changed by someone else and restored it, by what.",
);

/** 1 once the backend is initialised and subnet.env is written. */
export const backendReady = registry.gauge(
  "flannel_backend_ready",
  "1 once the backend is set up and subnet.env is written, else 0.",
);

/** Fills {@link buildInfo} from the daemon version and the runtime. */
export function setBuildInfo(version: string): void {
  buildInfo.set(1, {
    version,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  });
}
