// Google's Cloud SQL Node.js Connector (@google-cloud/cloud-sql-connector with pg) as a peer in
// benches/cold_start.rs. One long-lived Node process, so that Node's start and `require`s are not
// counted. Each line on stdin is a command; each answer is one line on stdout, `ms <milliseconds>`
// or `error <text>`:
//
// - `cold pg`: new Connector() -> getOptions() -> pg.Client.connect() -> SELECT 1, then the client
//   and the connector are closed. Every round's connector generates its own key.
// - `warm pg`: the same connect -> SELECT 1 on a connector made once before (certificate cached).
// - `bulk pg`: on a client from that warm connector, the time of one bulk query (`bulk_sql`, every
//   row fetched; the connect is not timed). The driver turns it into MB/s.
// - `quit` (or end of input) ends it.
//
// The setup comes as JSON in the env var COLD_START: {"admin_api", "instance", "user", "db",
// "bulk_sql", "bulk_bytes"}.
// Credentials come from the emulator's metadata server (GCE_METADATA_HOST), as on Cloud Run:
// google-auth-library sends a key file's JWT to oauth2.googleapis.com whatever its token_uri says.
'use strict';
const readline = require('node:readline');
const {Connector} = require('@google-cloud/cloud-sql-connector');
const {GoogleAuth} = require('google-auth-library');
const pg = require('pg');

const cfg = JSON.parse(process.env.COLD_START);
const SCOPES = ['https://www.googleapis.com/auth/sqlservice.admin'];

function connector() {
  return new Connector({sqlAdminAPIEndpoint: cfg.admin_api, auth: new GoogleAuth({scopes: SCOPES})});
}

async function firstRow(c) {
  const opts = await c.getOptions({instanceConnectionName: cfg.instance, ipType: 'PUBLIC'});
  const client = new pg.Client({...opts, user: cfg.user, database: cfg.db});
  await client.connect();
  const {rows} = await client.query('SELECT 1 AS one');
  if (rows[0].one !== 1) throw new Error(`SELECT 1 returned ${rows[0].one}`);
  return client;
}

async function cold() {
  const started = process.hrtime.bigint();
  const c = connector();
  const client = await firstRow(c);
  const elapsed = process.hrtime.bigint() - started;
  await client.end();
  c.close();
  return elapsed;
}

let warmConnector = null;
async function warm() {
  if (warmConnector === null) {
    warmConnector = connector();
    await (await firstRow(warmConnector)).end();
  }
  const started = process.hrtime.bigint();
  const client = await firstRow(warmConnector);
  const elapsed = process.hrtime.bigint() - started;
  await client.end();
  return elapsed;
}

async function bulk() {
  if (warmConnector === null) await warm();
  const client = await firstRow(warmConnector);
  const started = process.hrtime.bigint();
  const {rows} = await client.query(cfg.bulk_sql);
  const elapsed = process.hrtime.bigint() - started;
  await client.end();
  const read = rows.reduce((n, r) => n + Object.values(r)[0].length, 0);
  if (read !== cfg.bulk_bytes) throw new Error(`the bulk query returned ${read} bytes`);
  return elapsed;
}

async function main() {
  const commands = {'cold pg': cold, 'warm pg': warm, 'bulk pg': bulk};
  const lines = readline.createInterface({input: process.stdin});
  for await (const line of lines) {
    const command = line.trim();
    if (command === '' || command === 'quit') break;
    try {
      const run = commands[command];
      if (!run) throw new Error(`unknown command ${JSON.stringify(command)}`);
      const ns = await run();
      process.stdout.write(`ms ${(Number(ns) / 1e6).toFixed(3)}\n`);
    } catch (e) {
      process.stdout.write(`error ${String(e && e.stack ? e.stack : e).replace(/\n/g, ' ')}\n`);
    }
  }
  if (warmConnector !== null) warmConnector.close();
}

main();
