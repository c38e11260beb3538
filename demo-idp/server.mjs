#!/usr/bin/env node
// The demo site's OpenID Connect provider: panva's oidc-provider with a real
// username-and-password form. Invariant: an authorization code is issued only
// after the password typed for a configured account has been verified
// (scrypt, constant-time compare); there is no other way to log in.
//
// Usage: node server.mjs --config <file.json>   (the file is written by
// tre.demo.idp; see DemoIdPConfig there for its fields).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import Provider, { errors } from 'oidc-provider';

import { FileStore } from './store.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const scrypt = promisify(crypto.scrypt);
const MAX_PASSWORD_LENGTH = 1024;
const MAX_FORM_BYTES = 8 * 1024;
const AUTH_METHODS = new Set(['client_secret_basic', 'client_secret_post', 'none']);

// ---------------------------------------------------------------- logging

function formatValue(value) {
  const text = String(value);
  return /^[\w.:/@+-]*$/u.test(text) && text !== '' ? text : JSON.stringify(text);
}

function log(event, fields = {}) {
  const parts = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${formatValue(value)}`);
  process.stdout.write(`${new Date().toISOString()} demo-idp ${event} ${parts.join(' ')}\n`.replace(/ \n$/u, '\n'));
}

function fail(message) {
  process.stderr.write(`demo-idp: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- configuration

function loadConfig(file) {
  let config;
  try {
    config = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read the config file ${file}: ${err.message}`);
  }
  const need = (condition, what) => {
    if (!condition) fail(`config file ${file}: ${what}`);
  };
  const isText = (value) => typeof value === 'string' && value.length > 0;
  const isTextList = (value) => Array.isArray(value) && value.every(isText);

  need(isText(config.issuer) && URL.canParse(config.issuer), '"issuer" must be an http(s) URL');
  need(new URL(config.issuer).pathname === '/', '"issuer" must have no path (the provider serves from /)');
  need(Number.isInteger(config.port) && config.port > 0 && config.port < 65536, '"port" must be a whole number from 1 to 65535');
  need(isText(config.host ?? '127.0.0.1'), '"host" must be an address to listen on');
  need(isText(config.state_dir), '"state_dir" must name a folder');
  need(Array.isArray(config.clients) && config.clients.length > 0, '"clients" must list at least one client');
  for (const [i, client] of config.clients.entries()) {
    const where = `clients[${i}]`;
    need(isText(client.client_id), `${where}.client_id must be a non-empty string`);
    const method = client.token_endpoint_auth_method ?? 'client_secret_basic';
    need(AUTH_METHODS.has(method), `${where}.token_endpoint_auth_method must be one of ${[...AUTH_METHODS].join(', ')}`);
    need(method === 'none' || (isText(client.client_secret) && client.client_secret.length >= 32), `${where}.client_secret must be at least 32 characters`);
    need(isTextList(client.redirect_uris) && client.redirect_uris.length > 0, `${where}.redirect_uris must list at least one URL`);
    need(isTextList(client.post_logout_redirect_uris ?? []), `${where}.post_logout_redirect_uris must be a list of URLs`);
  }
  need(Array.isArray(config.accounts) && config.accounts.length > 0, '"accounts" must list at least one account');
  const seen = new Set();
  for (const [i, account] of config.accounts.entries()) {
    const where = `accounts[${i}]`;
    need(isText(account.username), `${where}.username must be a non-empty string`);
    need(!seen.has(account.username), `${where}.username '${account.username}' is listed twice`);
    seen.add(account.username);
    need(isText(account.name), `${where}.name must be a non-empty string`);
    need(account.email === undefined || account.email === null || isText(account.email), `${where}.email must be a string`);
    need(isTextList(account.groups ?? []), `${where}.groups must be a list of group names`);
    need(isText(account.password_hash) !== isText(account.password), `${where} needs exactly one of password_hash or password`);
    if (account.password_hash) {
      try {
        parseHash(account.password_hash);
      } catch (err) {
        fail(`config file ${file}: ${where}.password_hash: ${err.message}`);
      }
    }
  }
  const keys = config.keys ?? {};
  need(isTextList(keys.cookie_keys) && keys.cookie_keys.length > 0 && keys.cookie_keys.every((k) => k.length >= 32), 'keys.cookie_keys must list secrets of at least 32 characters');
  need(keys.signing_key?.kty === 'EC' && keys.signing_key?.crv === 'P-256' && isText(keys.signing_key?.d), 'keys.signing_key must be {"kty": "EC", "crv": "P-256", "d": <base64url>}');
  return config;
}

// The Python side stores only the private scalar; the public point follows from it.
function signingJwk({ d }) {
  const scalar = Buffer.from(d, 'base64url');
  if (scalar.length !== 32) fail('keys.signing_key.d must encode 32 bytes');
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.setPrivateKey(scalar);
  const point = ecdh.getPublicKey();
  const jwk = {
    kty: 'EC',
    crv: 'P-256',
    d,
    x: point.subarray(1, 33).toString('base64url'),
    y: point.subarray(33, 65).toString('base64url'),
    use: 'sig',
    alg: 'ES256',
  };
  crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  return jwk;
}

// ---------------------------------------------------------------- passwords

// Format: scrypt$N$r$p$<salt, base64url>$<derived key, base64url>; Python's
// hashlib.scrypt writes it (tre.demo.idp.hash_password).
function parseHash(encoded) {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') {
    throw new Error('expected scrypt$N$r$p$salt$hash');
  }
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4], 'base64url');
  const hash = Buffer.from(parts[5], 'base64url');
  if (![N, r, p].every(Number.isInteger) || N < 2 ** 14 || (N & (N - 1)) !== 0 || r < 1 || p < 1) {
    throw new Error('scrypt parameters must be N >= 16384 (a power of two), r >= 1, p >= 1');
  }
  if (salt.length < 16 || hash.length < 32) {
    throw new Error('salt must be at least 16 bytes and the hash at least 32');
  }
  return { N, r, p, salt, hash };
}

async function scryptMatches(encoded, password) {
  const { N, r, p, salt, hash } = parseHash(encoded);
  const derived = await scrypt(password, salt, hash.length, { N, r, p, maxmem: 256 * N * r });
  return crypto.timingSafeEqual(derived, hash);
}

function sha256(text) {
  return crypto.createHash('sha256').update(text, 'utf8').digest();
}

// Unknown users are checked against a throwaway hash so that a wrong username
// takes as long as a wrong password.
const DUMMY_HASH = (() => {
  const salt = crypto.randomBytes(16);
  const hash = crypto.scryptSync(crypto.randomBytes(16), salt, 32, { N: 2 ** 14, r: 8, p: 1 });
  return `scrypt$16384$8$1$${salt.toString('base64url')}$${hash.toString('base64url')}`;
})();

async function passwordMatches(account, password) {
  if (password.length === 0 || password.length > MAX_PASSWORD_LENGTH) return false;
  if (!account) {
    await scryptMatches(DUMMY_HASH, password);
    return false;
  }
  if (account.password_hash) return scryptMatches(account.password_hash, password);
  return crypto.timingSafeEqual(sha256(password), sha256(account.password));
}

// ---------------------------------------------------------------- pages

const LAYOUT = fs.readFileSync(path.join(HERE, 'views', 'layout.html'), 'utf8');
const LOGIN = fs.readFileSync(path.join(HERE, 'views', 'login.html'), 'utf8');
const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (value) => String(value ?? '').replace(/[&<>"']/gu, (c) => ESCAPES[c]);

// {{name}} is escaped, {{{name}}} is inserted as is (only ever our own HTML).
function fill(template, vars) {
  return template.replace(/\{\{\{(\w+)\}\}\}|\{\{(\w+)\}\}/gu, (_, raw, escaped) => (raw ? (vars[raw] ?? '') : esc(vars[escaped])));
}

// No form-action: browsers apply it to the redirect back to the client too.
const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

function makePage(siteName) {
  return function page(ctx, title, body, status) {
    if (status !== undefined) ctx.status = status;
    ctx.type = 'html';
    ctx.set('content-security-policy', PAGE_CSP);
    ctx.set('x-frame-options', 'DENY');
    ctx.set('cache-control', 'no-store');
    ctx.body = fill(LAYOUT, { title, site: siteName, body });
  };
}

async function readForm(req) {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return undefined;
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------- provider

function buildProvider(config, store, page) {
  const accounts = new Map(config.accounts.map((account) => [account.username, account]));
  const firstParty = new Set(config.clients.map((client) => client.client_id));

  async function findAccount(_ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: account.username,
          name: account.name,
          email: account.email ?? undefined,
          email_verified: account.email ? true : undefined,
          groups: [...(account.groups ?? [])],
        };
      },
    };
  }

  // Every configured client is one of the TRE's own services (first party),
  // so what it asks for is granted without a consent screen.
  async function loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!firstParty.has(oidc.client.clientId)) return grant;
    grant ??= new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
    if (oidc.requestParamClaims.size > 0) grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  }

  async function renderError(ctx, out) {
    const lines = Object.entries(out).map(([key, value]) => `<p><strong>${esc(key)}</strong>: ${esc(value)}</p>`);
    page(ctx, 'Sign-in error', lines.join('\n'));
  }

  async function logoutSource(ctx, form) {
    page(ctx, 'Sign out', `${form}
<p>Sign out of the demo identity provider?</p>
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button type="submit" form="op.logoutForm" class="secondary">No, stay signed in</button>`);
  }

  async function postLogoutSuccessSource(ctx) {
    page(ctx, 'Signed out', '<p>You are signed out. You may close this window.</p>');
  }

  const provider = new Provider(config.issuer, {
    adapter: store.adapterFactory(),
    clients: config.clients.map((client) => {
      const method = client.token_endpoint_auth_method ?? 'client_secret_basic';
      return {
        client_id: client.client_id,
        ...(method === 'none' ? {} : { client_secret: client.client_secret }),
        client_name: client.client_name ?? client.client_id,
        redirect_uris: client.redirect_uris,
        post_logout_redirect_uris: client.post_logout_redirect_uris ?? [],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: method,
      };
    }),
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    jwks: { keys: [signingJwk(config.keys.signing_key)] },
    cookies: { keys: config.keys.cookie_keys },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    findAccount,
    loadExistingGrant,
    // A refresh token for every client allowed the grant, without offline_access:
    // JupyterHub's auth_refresh_age uses it to pick up changed groups.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    pkce: { required: () => config.require_pkce !== false },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      revocation: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError,
    ttl: {
      AccessToken: 60 * 60,
      AuthorizationCode: 60,
      IdToken: 60 * 60,
      Interaction: 30 * 60,
      Grant: 14 * 24 * 60 * 60,
      Session: 14 * 24 * 60 * 60,
      RefreshToken: 14 * 24 * 60 * 60,
    },
  });
  provider.proxy = config.proxy === true;
  return { provider, accounts };
}

// ---------------------------------------------------------------- interactions

const INTERACTION_PATH = /^\/interaction\/([\w-]{1,64})(\/login)?$/u;

function interactionRoutes(provider, accounts, page) {
  const loginPage = (ctx, { uid, client, username = '', error, status = 200 }) => {
    const errorHtml = error ? `<p class="error" role="alert">${esc(error)}</p>` : '';
    page(ctx, 'Sign in', fill(LOGIN, { uid, client, username, error: errorHtml }), status);
  };

  const finish = async (ctx, result, merge) => {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
    ctx.status = 303;
    ctx.redirect(returnTo);
  };

  // Reached only when a client sends prompt=consent or asks for more than the
  // grant holds: first-party clients get what they asked for.
  const consent = async (ctx, details) => {
    const { prompt, params, session } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    log('consent.auto', { user: session.accountId, client: params.client_id });
    await finish(ctx, { consent: details.grantId ? {} : { grantId } }, true);
  };

  return async (ctx, next) => {
    const match = INTERACTION_PATH.exec(ctx.path);
    if (!match) return next();
    const [, uid, isLogin] = match;

    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      if (!(err instanceof errors.SessionNotFound)) throw err;
      return page(ctx, 'Sign-in expired', '<p>This sign-in request has expired or belongs to another browser. Go back to the application and start again.</p>', 400);
    }
    if (details.uid !== uid) {
      return page(ctx, 'Sign-in expired', '<p>This sign-in request does not match your browser\'s. Go back to the application and start again.</p>', 400);
    }
    const clientId = details.params.client_id;
    const client = await provider.Client.find(clientId);
    const clientName = client?.clientName ?? clientId;

    if (details.prompt.name === 'consent' && !isLogin && ctx.method === 'GET') {
      return consent(ctx, details);
    }
    if (details.prompt.name !== 'login') {
      return page(ctx, 'Unexpected request', '<p>This step is not part of signing in. Go back to the application and start again.</p>', 400);
    }
    if (!isLogin) {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return page(ctx, 'Method not allowed', '', 405);
      return loginPage(ctx, { uid, client: clientName });
    }
    if (ctx.method !== 'POST') return page(ctx, 'Method not allowed', '', 405);

    const form = await readForm(ctx.req);
    if (!form) return page(ctx, 'Bad request', '<p>Expected a sign-in form.</p>', 400);
    const username = (form.get('username') ?? '').trim();
    const password = form.get('password') ?? '';
    const account = accounts.get(username);
    if (!(await passwordMatches(account, password))) {
      // The typed name is logged only when it is an account: people type passwords there.
      log('login.failed', { user: account ? username : '(unknown)', client: clientId, reason: account ? 'wrong password' : 'unknown user' });
      return loginPage(ctx, { uid, client: clientName, username, error: 'Unknown username or wrong password.', status: 401 });
    }
    log('login.ok', { user: username, client: clientId });
    return finish(ctx, { login: { accountId: username } }, false);
  };
}

// ---------------------------------------------------------------- main

function main() {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  if (!values.config) fail('usage: node server.mjs --config <file.json>');
  const config = loadConfig(values.config);
  fs.mkdirSync(config.state_dir, { recursive: true, mode: 0o700 });
  const store = new FileStore(path.join(config.state_dir, 'store.json'));
  const page = makePage(config.site_name ?? 'Demo identity provider');
  const { provider, accounts } = buildProvider(config, store, page);

  provider.use(async (ctx, next) => {
    const started = Date.now();
    ctx.set('x-content-type-options', 'nosniff');
    ctx.set('referrer-policy', 'no-referrer');
    try {
      await next();
    } finally {
      // Paths only: query strings carry codes, states and tokens.
      log('http', { method: ctx.method, path: ctx.path, status: ctx.status, ms: Date.now() - started });
    }
  });
  provider.use(interactionRoutes(provider, accounts, page));

  provider.on('server_error', (_ctx, err) => log('server_error', { error: err.stack ?? String(err) }));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'end_session.error', 'revocation.error']) {
    provider.on(event, (_ctx, err) => log(event, { error: err.error ?? err.name, detail: err.error_description ?? err.message }));
  }
  provider.on('grant.success', (ctx) => log('grant.success', { client: ctx.oidc.client?.clientId }));

  const host = config.host ?? '127.0.0.1';
  const server = provider.listen(config.port, host, () => {
    log('listening', { url: `http://${host}:${config.port}`, issuer: config.issuer, accounts: accounts.size, clients: config.clients.length });
  });
  server.on('error', (err) => {
    process.stderr.write(`demo-idp: cannot listen on ${host}:${config.port}: ${err.message}\n`);
    process.exit(1);
  });

  const stop = (signal) => {
    log('stopping', { signal });
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
