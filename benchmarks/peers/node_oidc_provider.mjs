// node-oidc-provider as the benchmark kit's peer (benchmarks/peer.py starts it; see
// benchmarks/README.md, "A peer in the same run").
//
//   node node_oidc_provider.mjs CONFIG.json
//
// CONFIG names the port of the token endpoint, the port of the kit's preparation API, the
// issuer, one ES256 private JWK, a machine client (client_credentials) and a web client
// (authorization_code and refresh_token, PKCE S256), the API (resource) every access token is
// for, and the person codes are minted for. Every access token is a JWT signed with ES256 (RFC
// 9068 through the provider's resource indicators, like tokensvc's), every code exchange and
// refresh also answers an ES256 ID token, and every refresh rotates the refresh token, as
// tokensvc does. Tokens live in a plain Map: the provider's own in-memory adapter is an LRU of
// 1,000 entries, which would evict codes minted ahead of the timed window.
//
// The preparation API (its own port, never timed) mints what tokensvc's internal API mints:
//   POST /codes {"n": N} -> [[code, code_verifier], ...]   one grant and one code each
// Refresh tokens come from exchanging such codes at the token endpoint, as for tokensvc.
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const stored = new Map(); // "Model:id" -> {payload, expiresAt}
const byGrant = new Map(); // grantId -> Set of keys

/** The provider's adapter interface over one Map, with expiry checked on read. */
class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    stored.set(key, { payload, expiresAt });
    if (payload.grantId) {
      let keys = byGrant.get(payload.grantId);
      if (!keys) byGrant.set(payload.grantId, (keys = new Set()));
      keys.add(key);
    }
    if (payload.uid) stored.set(`uid:${payload.uid}`, { payload: id, expiresAt });
  }

  async find(id) {
    const entry = stored.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      stored.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const entry = stored.get(`uid:${uid}`);
    return entry ? this.find(entry.payload) : undefined;
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const entry = stored.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    stored.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of byGrant.get(grantId) ?? []) stored.delete(key);
    byGrant.delete(grantId);
  }
}

const person = config.person;
const scope = 'openid profile email offline_access';

const provider = new Provider(config.issuer, {
  adapter: MapAdapter,
  jwks: { keys: [config.jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clients: [
    {
      client_id: config.machine.client_id,
      client_secret: config.machine.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    {
      client_id: config.web.client_id,
      client_secret: config.web.secret,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [config.web.redirect_uri],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', config.scope],
  findAccount: (_ctx, sub) => ({
    accountId: sub,
    claims: () => ({ sub, name: person.name, email: person.email, email_verified: true }),
  }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: config.scope,
        audience: config.resource,
        accessTokenTTL: config.access_token_ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: config.access_token_ttl,
    ClientCredentials: config.access_token_ttl,
    AuthorizationCode: config.code_ttl,
    IdToken: config.access_token_ttl,
    RefreshToken: config.refresh_token_ttl,
    Grant: config.refresh_token_ttl,
  },
});

async function mintCode(client) {
  const verifier = crypto.randomBytes(48).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const grant = new provider.Grant({ accountId: person.sub, clientId: client.clientId });
  grant.addOIDCScope(scope);
  grant.addResourceScope(config.resource, config.scope);
  const grantId = await grant.save();
  const code = new provider.AuthorizationCode({
    accountId: person.sub,
    authTime: Math.floor(Date.now() / 1000),
    client,
    codeChallenge: challenge,
    codeChallengeMethod: 'S256',
    expiresWithSession: false,
    grantId,
    nonce: crypto.randomBytes(12).toString('base64url'),
    redirectUri: config.web.redirect_uri,
    resource: config.resource,
    scope,
  });
  return [await code.save(), verifier];
}

async function prepare(request, response) {
  let body = '';
  for await (const chunk of request) body += chunk;
  try {
    if (request.method !== 'POST' || request.url !== '/codes') throw new Error('POST /codes only');
    const n = JSON.parse(body).n;
    const client = await provider.Client.find(config.web.client_id);
    const codes = [];
    for (let i = 0; i < n; i += 1) codes.push(await mintCode(client));
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify(codes));
  } catch (error) {
    response.writeHead(400, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: String(error) }));
  }
}

provider.on('server_error', (_ctx, error) => console.error('server_error', error));
createServer(provider.callback()).listen(config.port, '127.0.0.1');
createServer(prepare).listen(config.prepare_port, '127.0.0.1');
console.log(`peer listening on ${config.port}, preparation on ${config.prepare_port}`);
