/**
 * The etcd of a namespace cluster: an {@linkcode EtcdServer} inside the hub namespace, started
 * with the cluster or later (to test a daemon that comes up before etcd).
 */

import { EtcdServer, hostPort } from "./etcd.ts";

/** The cluster's etcd as the tests see it: key operations through etcdctl, start/stop. */
export interface EtcdHandle {
  /** The value for `--etcd-endpoints`, reachable from every host namespace. */
  readonly endpoints: string;
  /** CA, client certificate and key when etcd runs with TLS (set once etcd has started). */
  readonly tlsFiles: { caFile: string; certFile: string; keyFile: string } | undefined;
  /** The running server, null before the first start. */
  readonly server: EtcdServer | null;
  put(key: string, value: string, opts?: { ttlSeconds?: number }): Promise<void>;
  get(key: string): Promise<string | null>;
  del(key: string): Promise<void>;
  list(prefix: string): Promise<Record<string, string>>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The {@linkcode EtcdHandle} of a cluster: an {@linkcode EtcdServer} started on demand. */
export class ClusterEtcd implements EtcdHandle {
  #server: EtcdServer | null = null;
  readonly #opts: { netns: string; host: string; port: number; tls: boolean };

  /** etcd will run in `netns`, listening on `host`:2379, with client certificates if `tls`. */
  constructor(netns: string, host: string, tls: boolean) {
    this.#opts = { netns, host, port: 2379, tls };
  }

  get endpoints(): string {
    return this.#server?.endpoint ??
      `${this.#opts.tls ? "https" : "http"}://${hostPort(this.#opts.host, this.#opts.port)}`;
  }

  get tlsFiles() {
    return this.#server?.tlsFiles;
  }

  get server(): EtcdServer | null {
    return this.#server;
  }

  #running(): EtcdServer {
    if (this.#server === null) throw new Error("Etcd is not started: call cluster.etcd.start()");
    return this.#server;
  }

  async put(key: string, value: string, opts?: { ttlSeconds?: number }): Promise<void> {
    await this.#running().put(key, value, opts);
  }

  async get(key: string): Promise<string | null> {
    return await this.#running().get(key);
  }

  async del(key: string): Promise<void> {
    await this.#running().del(key);
  }

  async list(prefix: string): Promise<Record<string, string>> {
    return await this.#running().list(prefix);
  }

  async start(): Promise<void> {
    if (this.#server === null) {
      this.#server = await EtcdServer.start({
        ...this.#opts,
        ...(this.#opts.tls ? { clientCertAuth: true } : {}),
      });
    } else {
      await this.#server.start();
    }
  }

  async stop(): Promise<void> {
    await this.#server?.stop();
  }

  /** Kills etcd and removes its data. */
  async dispose(): Promise<void> {
    if (this.#server !== null) await this.#server[Symbol.asyncDispose]();
  }
}
