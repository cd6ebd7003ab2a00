// oauth4webapi (panva, v3) against a running tokensvc: DPoP-bound tokens (RFC 9449). Generates
// a DPoP key pair, discovers the issuer, and makes two client_credentials grants with DPoP
// proofs from one `DPoP(client, keyPair)` handle, each retried once the library's way when the
// server asks for a nonce (`use_dpop_nonce`, RFC 9449 §8). Driven by
// tests/interop/test_oauth4webapi_dpop.py.
//
//   node dpop.mjs --issuer URL   with INTEROP_CLIENT_ID / INTEROP_CLIENT_SECRET in the
//                                environment (or as --client-id / --client-secret)
//
// Prints one JSON object on stdout: the key's thumbprint as the library computes it (what the
// token's cnf.jkt must be), and per grant the response as the library parsed it (`response`)
// and every HTTP answer on the wire (`http`: status, body, DPoP-Nonce). Any error: the
// library's error on stderr, exit status 1; bad arguments: exit status 2.

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import * as oauth from "oauth4webapi";

const OPTIONS = {
  issuer: { env: "INTEROP_ISSUER" },
  "client-id": { env: "INTEROP_CLIENT_ID" },
  "client-secret": { env: "INTEROP_CLIENT_SECRET" },
};

function settings() {
  let values;
  try {
    const options = Object.fromEntries(Object.keys(OPTIONS).map((n) => [n, { type: "string" }]));
    ({ values } = parseArgs({ options, strict: true }));
  } catch (err) {
    process.stderr.write(`dpop.mjs: ${err.message}\n`);
    process.exit(2);
  }
  for (const [name, { env }] of Object.entries(OPTIONS)) {
    values[name] ??= process.env[env];
    if (!values[name]) {
      process.stderr.write(`dpop.mjs: --${name} (or ${env}) is required\n`);
      process.exit(2);
    }
  }
  return values;
}

// Every answer as it came over the wire: the library reads the nonce from `DPoP-Nonce` itself,
// this only shows the test that it had to.
const wire = [];

async function recordingFetch(url, options) {
  const response = await fetch(url, options);
  let body;
  try {
    body = await response.clone().json();
  } catch {
    body = await response.clone().text();
  }
  wire.push({
    url: String(url),
    status: response.status,
    body,
    dpop_nonce: response.headers.get("dpop-nonce"),
  });
  return response;
}

// Plain http on loopback: allowInsecureRequests, as the library documents for tests only.
const HTTP = { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: recordingFetch };

// One client_credentials grant with a fresh proof; on `use_dpop_nonce` the handle has kept the
// server's nonce, and the same call once more is the library's documented retry.
async function grant(as, client, clientAuth, DPoP) {
  const before = wire.length;
  const request = () =>
    oauth.clientCredentialsGrantRequest(as, client, clientAuth, {}, { ...HTTP, DPoP });
  let response;
  try {
    response = await oauth.processClientCredentialsResponse(as, client, await request());
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    response = await oauth.processClientCredentialsResponse(as, client, await request());
  }
  return { response: { ...response }, http: wire.slice(before) };
}

async function main() {
  const args = settings();
  const version = JSON.parse(
    await readFile(new URL("./node_modules/oauth4webapi/package.json", import.meta.url)),
  ).version;
  const issuer = new URL(args.issuer);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, HTTP),
  );
  const client = { client_id: args["client-id"] };
  const clientAuth = oauth.ClientSecretBasic(args["client-secret"]);
  const keyPair = await oauth.generateKeyPair("ES256");
  const DPoP = oauth.DPoP(client, keyPair);

  const out = {
    library: { name: "oauth4webapi", version },
    issuer: as.issuer,
    dpop_signing_alg_values_supported: as.dpop_signing_alg_values_supported,
    thumbprint: await DPoP.calculateThumbprint(),
  };
  out.first = await grant(as, client, clientAuth, DPoP);
  out.second = await grant(as, client, clientAuth, DPoP); // a fresh proof, the nonce kept
  process.stdout.write(JSON.stringify(out) + "\n");
}

function describe(err) {
  const seen = {};
  for (const key of ["name", "message", "code", "error", "error_description", "status"]) {
    if (err?.[key] !== undefined) seen[key] = err[key];
  }
  if (err?.cause !== undefined) {
    seen.cause = err.cause instanceof Error ? describe(err.cause) : err.cause;
  }
  return seen;
}

main().catch((err) => {
  process.stderr.write(`dpop.mjs: ${err?.stack ?? err}\n`);
  try {
    process.stderr.write(`${JSON.stringify({ error: describe(err), http: wire })}\n`);
  } catch {
    // an error that does not serialize: the stack above says it all
  }
  process.exit(1);
});
