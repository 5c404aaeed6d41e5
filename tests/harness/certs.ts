/**
 * Test certificates made with openssl: a CA, a server certificate (IP SANs + DNS `localhost`) and a
 * client certificate, all signed by the CA.
 */

/** Paths of the PEM files written by {@link makeCerts}. */
export interface CertFiles {
  dir: string;
  caFile: string;
  caKeyFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

/** ECDSA P-256: much faster to generate than RSA on a busy machine, accepted by etcd and Deno. */
const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/**
 * Writes a CA, a server and a client certificate into `dir` (created when missing).
 * The server certificate has IP SANs 127.0.0.1 plus `ips`, and DNS `localhost` plus `dnsNames`.
 * `serverIPs: []` with `includeLoopback: false` gives a certificate that does not cover 127.0.0.1.
 */
export async function makeCerts(
  dir: string,
  opts: { ips?: string[]; dnsNames?: string[]; includeLoopback?: boolean } = {},
): Promise<CertFiles> {
  await Deno.mkdir(dir, { recursive: true });
  const ips = [...(opts.includeLoopback === false ? [] : ["127.0.0.1"]), ...(opts.ips ?? [])];
  const dns = [
    ...(opts.includeLoopback === false ? [] : ["localhost"]),
    ...(opts.dnsNames ?? []),
  ];
  const san = [...ips.map((ip) => `IP:${ip}`), ...dns.map((d) => `DNS:${d}`)].join(",");
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  await Deno.writeTextFile(`${dir}/client.ext`, "extendedKeyUsage=clientAuth\n");
  const days = "2";
  await openssl([
    "req",
    "-x509",
    ...KEY,
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    days,
    "-subj",
    "/CN=flannel-test-ca",
  ], dir);
  for (const [name, cn] of [["server", "etcd-server"], ["client", "flannel-client"]]) {
    await openssl([
      "req",
      ...KEY,
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${cn}`,
    ], dir);
    await openssl([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      days,
      "-extfile",
      `${name}.ext`,
    ], dir);
  }
  return {
    dir,
    caFile: `${dir}/ca.crt`,
    caKeyFile: `${dir}/ca.key`,
    serverCertFile: `${dir}/server.crt`,
    serverKeyFile: `${dir}/server.key`,
    clientCertFile: `${dir}/client.crt`,
    clientKeyFile: `${dir}/client.key`,
  };
}
