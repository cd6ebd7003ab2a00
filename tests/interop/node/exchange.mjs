// openid-client (panva, v6) against a running tokensvc: discovery, a client_credentials grant
// for a resource (RFC 8707), a token exchange (RFC 8693) and, with --txn, a transaction-token
// request (draft-ietf-oauth-transaction-tokens). Driven by tests/interop/test_openid_client.py.
//
//   node exchange.mjs --issuer URL --resource URI --scope S [--txn]
//     with the credentials in the environment (or as the options of the same names):
//     INTEROP_MACHINE_CLIENT_ID / INTEROP_MACHINE_CLIENT_SECRET      (client_credentials)
//     INTEROP_EXCHANGER_CLIENT_ID / INTEROP_EXCHANGER_CLIENT_SECRET  (token exchange)
//     INTEROP_SUBJECT_TOKEN                                          (a person's access token)
//
// Prints one JSON object on stdout: per step the response as the library parsed it
// (`response`) and the HTTP answer on the wire (`http`: status and body). Any error: the
// library's error on stderr, exit status 1; bad arguments: exit status 2.

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import * as client from "openid-client";

const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
const TXN_TOKEN = "urn:ietf:params:oauth:token-type:txn_token";
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

const OPTIONS = {
  issuer: { type: "string", env: "INTEROP_ISSUER" },
  resource: { type: "string", env: "INTEROP_RESOURCE" },
  scope: { type: "string", env: "INTEROP_SCOPE" },
  "machine-client-id": { type: "string", env: "INTEROP_MACHINE_CLIENT_ID" },
  "machine-client-secret": { type: "string", env: "INTEROP_MACHINE_CLIENT_SECRET" },
  "exchanger-client-id": { type: "string", env: "INTEROP_EXCHANGER_CLIENT_ID" },
  "exchanger-client-secret": { type: "string", env: "INTEROP_EXCHANGER_CLIENT_SECRET" },
  "subject-token": { type: "string", env: "INTEROP_SUBJECT_TOKEN" },
  txn: { type: "boolean" },
};

function usage(message) {
  process.stderr.write(`exchange.mjs: ${message}\n`);
  process.exit(2);
}

function settings() {
  let values;
  try {
    const options = Object.fromEntries(
      Object.entries(OPTIONS).map(([name, { type }]) => [name, { type }]),
    );
    ({ values } = parseArgs({ options, strict: true }));
  } catch (err) {
    usage(err.message);
  }
  for (const [name, { type, env }] of Object.entries(OPTIONS)) {
    if (type !== "string") continue;
    values[name] ??= env ? process.env[env] : undefined;
    if (!values[name]) usage(`--${name} (or ${env}) is required`);
  }
  return values;
}

// Every token-endpoint answer as it came over the wire, next to what the library made of it
// (openid-client lower-cases `token_type`, for one).
const wire = [];

function recording(config) {
  config[client.customFetch] = async (url, options) => {
    const response = await fetch(url, options);
    let body;
    try {
      body = await response.clone().json();
    } catch {
      body = await response.clone().text();
    }
    wire.push({ url: String(url), status: response.status, body });
    return response;
  };
  return config;
}

async function step(call) {
  const before = wire.length;
  const response = await call();
  return { response: { ...response }, http: wire.slice(before) };
}

async function main() {
  const args = settings();
  const version = JSON.parse(
    await readFile(new URL("./node_modules/openid-client/package.json", import.meta.url)),
  ).version;

  // Discovery of /.well-known/openid-configuration; the library checks that the document's
  // issuer is the URL asked. Plain http on loopback: allowInsecureRequests (tests only).
  const machine = await client.discovery(
    new URL(args.issuer),
    args["machine-client-id"],
    undefined,
    client.ClientSecretBasic(args["machine-client-secret"]),
    { execute: [client.allowInsecureRequests] },
  );
  recording(machine);
  const metadata = machine.serverMetadata();

  // The exchanging service: the same server metadata, its own credentials.
  const exchanger = recording(
    new client.Configuration(
      metadata,
      args["exchanger-client-id"],
      undefined,
      client.ClientSecretBasic(args["exchanger-client-secret"]),
    ),
  );
  client.allowInsecureRequests(exchanger);

  const out = {
    library: { name: "openid-client", version },
    issuer: metadata.issuer,
    token_endpoint: metadata.token_endpoint,
    grant_types_supported: metadata.grant_types_supported,
  };

  out.client_credentials = await step(() =>
    client.clientCredentialsGrant(machine, { resource: args.resource }),
  );

  out.token_exchange = await step(() =>
    client.genericGrantRequest(exchanger, TOKEN_EXCHANGE, {
      subject_token: args["subject-token"],
      subject_token_type: ACCESS_TOKEN,
      resource: args.resource,
      scope: args.scope,
    }),
  );

  if (args.txn) {
    out.txn_token = await step(() =>
      client.genericGrantRequest(exchanger, TOKEN_EXCHANGE, {
        subject_token: args["subject-token"],
        subject_token_type: ACCESS_TOKEN,
        requested_token_type: TXN_TOKEN,
        audience: metadata.issuer, // the trust domain: by default the issuer, exactly
        scope: args.scope,
        request_context: JSON.stringify({ req_ip: "198.51.100.7" }),
        request_details: JSON.stringify({ action: "checkout" }),
      }),
    );
  }

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
  process.stderr.write(`exchange.mjs: ${err?.stack ?? err}\n`);
  try {
    process.stderr.write(`${JSON.stringify({ error: describe(err), http: wire })}\n`);
  } catch {
    // an error that does not serialize: the stack above says it all
  }
  process.exit(1);
});
