// Google's own Cloud SQL Node.js Connector (@google-cloud/cloud-sql-connector with pg and mysql2)
// against the cloudsql-rs emulator. Run by tests/conformance_node.rs with the setup in the JSON
// env var CONFORMANCE and NODE_PATH pointing at the cached node_modules. Credentials come from the
// emulator's metadata server (GCE_METADATA_HOST), as on GCE, Cloud Run or GKE: google-auth-library
// sends a service-account key's JWT to oauth2.googleapis.com whatever the key's token_uri says.
// A table goes to stderr, one JSON object {case: {ok, detail}} to stdout (last line).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {Connector} = require('@google-cloud/cloud-sql-connector');
const {GoogleAuth} = require('google-auth-library');
const pg = require('pg');
const mysql = require('mysql2/promise');

const cfg = JSON.parse(process.env.CONFORMANCE);

// The PSC DNS name resolves only in the consumer's VPC; stand in for its private DNS zone.
const dns = require('node:dns');
const lookup = dns.lookup;
dns.lookup = (host, ...rest) => lookup(cfg.psc_hosts[String(host).replace(/\.$/, '')] || host, ...rest);

// Asks the test for a change to the emulator (a client CA rotation) and waits until it is made.
const readline = require('node:readline');
const stdinLines = readline.createInterface({input: process.stdin})[Symbol.asyncIterator]();
async function emulator(action, instance) {
  process.stdout.write(`EMULATOR ${action} ${instance}\n`);
  await stdinLines.next();
}
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const results = {};
const SCOPES = [
  'https://www.googleapis.com/auth/sqlservice.admin',
  'https://www.googleapis.com/auth/sqlservice.login',
];

function connector() {
  return new Connector({
    sqlAdminAPIEndpoint: cfg.admin_api,
    auth: new GoogleAuth({scopes: SCOPES}),
  });
}

async function run(name, fn) {
  try {
    const [ok, detail] = await fn();
    results[name] = {ok: Boolean(ok), detail: JSON.stringify(detail)};
  } catch (e) {
    results[name] = {ok: false, detail: `${e && e.code ? e.code + ' ' : ''}${e && e.stack ? e.stack : e}`};
  }
}

async function pgUserIs(c, instanceConnectionName, user, password, extra = {}) {
  const clientOpts = await c.getOptions({instanceConnectionName, ipType: 'PUBLIC', ...extra});
  const client = new pg.Client({...clientOpts, user, password, database: 'postgres'});
  await client.connect();
  try {
    const {rows} = await client.query('SELECT current_user::text AS u, 1 AS one');
    return [rows[0].u === user && rows[0].one === 1, rows[0]];
  } finally {
    await client.end();
  }
}

async function myUserIs(c, instanceConnectionName, user, password, extra = {}, driver = {}) {
  const clientOpts = await c.getOptions({instanceConnectionName, ipType: 'PUBLIC', ...extra});
  const conn = await mysql.createConnection({
    ...clientOpts, ...driver, user, password, database: cfg.mysql.db,
  });
  try {
    const [rows] = await conn.query('SELECT CURRENT_USER() AS u, 1 AS one');
    return [rows[0].u === `${user}@%` && rows[0].one === 1, rows[0]];
  } finally {
    await conn.end();
  }
}

async function refused(fn, ...needles) {
  try {
    await fn();
  } catch (e) {
    const text = `${e && e.code ? e.code + ' ' : ''}${e && e.message ? e.message : e}`;
    return [needles.some(n => text.toLowerCase().includes(n.toLowerCase())), text];
  }
  return [false, 'connected'];
}

async function main() {
  const {pg: p, mysql: m} = cfg;
  const c = connector();
  for (const mode of ['cas', 'legacy', 'customer_cas']) {
    await run(`pg password ${mode}`, () => pgUserIs(c, p[mode], p.user, p.password));
    await run(`pg automatic IAM ${mode}`, () =>
      pgUserIs(c, p[mode], p.iam_user, undefined, {authType: 'IAM'}));
  }
  await run('pg manual IAM (token as password)', () => pgUserIs(c, p.cas, p.iam_user, cfg.login_token));
  await run('pg wrong password refused (28P01)', () =>
    refused(() => pgUserIs(c, p.cas, p.user, 'wrong'), '28P01', 'password authentication failed'));
  await run('pg private IP', () => pgUserIs(c, p.legacy, p.user, p.password, {ipType: 'PRIVATE'}));
  for (const mode of ['cas', 'legacy']) {
    await run(`mysql2 password ${mode}`, () => myUserIs(c, m[mode], m.user, m.password));
    await run(`mysql2 automatic IAM ${mode}`, () =>
      myUserIs(c, m[mode], m.iam_user, undefined, {authType: 'IAM'}));
  }
  // The tunnel is TLS, so the cleartext plugin (off by default in mysql2) is safe to enable.
  await run('mysql2 manual IAM (token, mysql_clear_password)', () =>
    myUserIs(c, m.cas, m.iam_user, cfg.login_token, {}, {enableCleartextPlugin: true}));
  await run('pg through startLocalProxy (Unix socket)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudsql-node-'));
    await c.startLocalProxy({
      instanceConnectionName: p.cas,
      ipType: 'PUBLIC',
      listenOptions: {path: path.join(dir, '.s.PGSQL.5432')},
    });
    const client = new pg.Client({host: dir, user: p.user, password: p.password, database: 'postgres'});
    await client.connect();
    const {rows} = await client.query('SELECT current_user::text AS u');
    await client.end();
    return [rows[0].u === p.user, rows[0]];
  });
  await run('pg PSC (DNS name mapped locally)', () =>
    pgUserIs(c, p.psc, p.user, p.password, {ipType: 'PSC'}));
  await run('client CA rotation recovered by a retry', async () => {
    // A short refresh rate limit (a documented option) so the forced refresh is not held 30 s.
    const opts = {limitRateInterval: 500};
    const before = await pgUserIs(c, p.rotate, p.user, p.password, opts);
    await emulator('rotate_client_ca', p.rotate);
    const after = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt) await sleep(1000);
      try {
        after.push(await pgUserIs(c, p.rotate, p.user, p.password, opts));
        break;
      } catch (e) {
        after.push(`${e && e.code ? e.code + ' ' : ''}${e && e.message}`);
      }
    }
    const last = after[after.length - 1];
    return [before[0] && Array.isArray(last) && last[0], {before, after}];
  });
  await run('expired server certificate refused', () =>
    refused(() => pgUserIs(c, p.expired, p.user, p.password), 'CERT_HAS_EXPIRED', 'expired'));
  await run('403 SERVICE_DISABLED message surfaced', () =>
    refused(() => pgUserIs(c, p.disabled, p.user, p.password), 'Cloud SQL Admin API has not been used'));
  await run('500 from connectSettings (GET) retried', () => pgUserIs(c, p.flaky_get, p.user, p.password));
  // gaxios retries only idempotent methods for the googleapis client (the connector's POST retry
  // setting lands on another gaxios instance), so a 500 on generateEphemeralCert fails that
  // connect, as against Cloud SQL. The connector keeps the failed entry for one more call (which
  // rethrows the error and evicts it); the call after refreshes again and succeeds.
  await run('500 from generateEphemeralCert (POST) surfaced, then recovered', async () => {
    const first = await refused(() => pgUserIs(c, p.flaky, p.user, p.password), 'Internal error');
    const later = [];
    for (let i = 0; i < 2 && !(later.length && later[later.length - 1] === true); i++) {
      try {
        later.push((await pgUserIs(c, p.flaky, p.user, p.password))[0]);
      } catch (e) {
        later.push(String(e && e.message));
      }
    }
    return [first[0] && later[later.length - 1] === true, {first: first[1], later}];
  });
  c.close();
}

main()
  .catch(e => {
    results.script = {ok: false, detail: String(e && e.stack ? e.stack : e)};
  })
  .finally(() => {
    const width = Math.max(...Object.keys(results).map(k => k.length));
    for (const [name, r] of Object.entries(results)) {
      process.stderr.write(`${name.padEnd(width)}  ${r.ok ? 'pass' : 'FAIL'}\n`);
    }
    process.stdout.write(JSON.stringify(results) + '\n');
    stdinLines.return();
    process.exit(0);
  });
