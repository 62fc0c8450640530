"""Google's own Cloud SQL Python Connector (pg8000, asyncpg, pymysql) against the cloudsql-rs emulator.

Run by tests/conformance_python.rs with the setup in the JSON env var CONFORMANCE. Each case
records whether the connector behaved as it does against real Cloud SQL ("ok") and what
happened ("detail"). A table goes to stderr, one JSON object to stdout (last line).

When a case needs the emulator to change mid-run (a client CA rotation), the script prints
`EMULATOR <action> <instance>` and waits for a line on stdin.
"""
import asyncio
import json
import os
import socket
import sys
import time
import traceback

from google.cloud.sql.connector import Connector, create_async_connector

cfg = json.loads(os.environ["CONFORMANCE"])
endpoint = cfg["admin_api"]
pg, my = cfg["pg"], cfg["mysql"]
results = {}

# The PSC DNS name resolves only in the consumer's VPC; stand in for its private DNS zone.
_getaddrinfo = socket.getaddrinfo


def _psc_getaddrinfo(host, *args, **kwargs):
    host = cfg["psc_hosts"].get(str(host).rstrip("."), host)
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _psc_getaddrinfo


def emulator(action, instance):
    print(f"EMULATOR {action} {instance}", flush=True)
    sys.stdin.readline()


def case(name, fn):
    try:
        ok, detail = fn()
    except Exception as e:  # a case that raised did not behave as expected
        ok, detail = False, f"{type(e).__name__}: {e} {traceback.format_exc(limit=3)}"
    results[name] = {"ok": bool(ok), "detail": str(detail)[:2000]}


def query(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    conn.close()
    return list(row)


def pg_user_is(conn, user):
    got = query(conn, "SELECT current_user::text, 1")
    return got == [user, 1], got


def my_user_is(conn, user):
    got = query(conn, "SELECT CURRENT_USER(), 1")
    return got == [f"{user}@%", 1], got


def refused(fn, *needles):
    """The connect must fail, with an error naming one of the needles."""
    try:
        fn()
    except Exception as e:
        text = f"{type(e).__name__}: {e!r} {e}"
        return any(n.lower() in text.lower() for n in needles), text
    return False, "connected"


def pg8000(connector, inst, user, password=None, **kw):
    return connector.connect(inst, "pg8000", user=user, password=password, db="postgres", **kw)


def pymysql(connector, inst, user, password=None):
    return connector.connect(inst, "pymysql", user=user, password=password, db=my["db"])


def fresh(**kw):
    return Connector(sqladmin_api_endpoint=endpoint, **kw)


# --- pg8000: password, automatic IAM and manual IAM, in every CA mode --------------------------
with fresh() as c:
    for mode in ("cas", "legacy", "customer_cas"):
        case(f"pg8000 password {mode}",
             lambda: pg_user_is(pg8000(c, pg[mode], pg["user"], pg["password"]), pg["user"]))
        case(f"pg8000 manual IAM (token as password) {mode}",
             lambda: pg_user_is(pg8000(c, pg[mode], pg["iam_user"], cfg["login_token"]), pg["iam_user"]))
    case("pg8000 wrong password refused (28P01)",
         lambda: refused(lambda: pg8000(c, pg["cas"], pg["user"], "wrong"), "28P01"))
    case("pg8000 IAM user without IAM authn refused (28000 or no password)",
         # The instance asks an IAM user for a password (a token, for manual IAM authn); without
         # one pg8000 gives up before sending anything, as against real Cloud SQL.
         lambda: refused(lambda: pg8000(c, pg["cas"], pg["iam_user"]), "28000", "no password was provided"))
with fresh(enable_iam_auth=True) as c:
    for mode in ("cas", "legacy", "customer_cas"):
        case(f"pg8000 automatic IAM {mode}",
             lambda: pg_user_is(pg8000(c, pg[mode], pg["iam_user"]), pg["iam_user"]))

# --- IP types ----------------------------------------------------------------------------------
with fresh(ip_type="private") as c:
    case("pg8000 private IP", lambda: pg_user_is(pg8000(c, pg["legacy"], pg["user"], pg["password"]), pg["user"]))
with fresh(ip_type="psc") as c:
    case("pg8000 PSC (DNS name mapped locally)",
         lambda: pg_user_is(pg8000(c, pg["psc"], pg["user"], pg["password"]), pg["user"]))
with fresh(ip_type="public") as c:
    case("public IP refused when the instance has none",
         lambda: refused(lambda: pg8000(c, pg["psc"], pg["user"], pg["password"]), "does not have any IP addresses matching preference: PRIMARY"))


# --- asyncpg -----------------------------------------------------------------------------------
async def asyncpg_cases():
    async def user_is(connector, inst, user, password=None):
        conn = await connector.connect_async(inst, "asyncpg", user=user, password=password, db="postgres")
        got = list(await conn.fetchrow("SELECT current_user::text, 1"))
        await conn.close()
        return got == [user, 1], got

    async def acase(name, coro):
        try:
            ok, detail = await coro
        except Exception as e:
            ok, detail = False, f"{type(e).__name__}: {e}"
        results[name] = {"ok": bool(ok), "detail": str(detail)[:2000]}

    c = await create_async_connector(sqladmin_api_endpoint=endpoint)
    await acase("asyncpg password cas", user_is(c, pg["cas"], pg["user"], pg["password"]))
    await acase("asyncpg password legacy", user_is(c, pg["legacy"], pg["user"], pg["password"]))
    await acase("asyncpg manual IAM (token as password)",
                user_is(c, pg["cas"], pg["iam_user"], cfg["login_token"]))
    await c.close_async()
    c = await create_async_connector(sqladmin_api_endpoint=endpoint, enable_iam_auth=True)
    await acase("asyncpg automatic IAM cas", user_is(c, pg["cas"], pg["iam_user"]))
    await acase("asyncpg automatic IAM legacy", user_is(c, pg["legacy"], pg["iam_user"]))
    await c.close_async()


asyncio.run(asyncpg_cases())

# --- pymysql -----------------------------------------------------------------------------------
with fresh() as c:
    for mode in ("cas", "legacy"):
        case(f"pymysql password {mode}",
             lambda: my_user_is(pymysql(c, my[mode], my["user"], my["password"]), my["user"]))
        case(f"pymysql manual IAM (token, mysql_clear_password) {mode}",
             lambda: my_user_is(pymysql(c, my[mode], my["iam_user"], cfg["login_token"]), my["iam_user"]))
    case("pymysql IAM user without IAM authn refused (1045)",
         lambda: refused(lambda: pymysql(c, my["cas"], my["iam_user"]), "1045"))
with fresh(enable_iam_auth=True) as c:
    for mode in ("cas", "legacy"):
        case(f"pymysql automatic IAM {mode}",
             lambda: my_user_is(pymysql(c, my[mode], my["iam_user"]), my["iam_user"]))


# --- refresh strategies with short certificates ------------------------------------------------
def twice(connector, inst):
    first = pg_user_is(pg8000(connector, inst, pg["user"], pg["password"]), pg["user"])
    second = pg_user_is(pg8000(connector, inst, pg["user"], pg["password"]), pg["user"])
    return first[0] and second[0], [first[1], second[1]]


with fresh(refresh_strategy="lazy") as c:
    case("lazy refresh, short certificate, two connects", lambda: twice(c, pg["short_lazy"]))
with fresh(refresh_strategy="background") as c:
    case("background refresh, short certificate, two connects", lambda: twice(c, pg["short_background"]))

# --- faults the client can observe -------------------------------------------------------------
with fresh() as c:
    case("expired server certificate refused",
         lambda: refused(lambda: pg8000(c, pg["expired"], pg["user"], pg["password"], timeout=10),
                         "certificate has expired", "CERTIFICATE_VERIFY_FAILED"))
with fresh() as c:
    case("403 SERVICE_DISABLED message surfaced",
         lambda: refused(lambda: pg8000(c, pg["disabled"], pg["user"], pg["password"]),
                         "Cloud SQL Admin API has not been used"))
with fresh() as c:
    case("500 from generateEphemeralCert retried",
         lambda: pg_user_is(pg8000(c, pg["flaky"], pg["user"], pg["password"]), pg["user"]))


def rotation():
    with fresh() as c:
        before = pg_user_is(pg8000(c, pg["rotate"], pg["user"], pg["password"]), pg["user"])
        emulator("rotate_client_ca", pg["rotate"])
        attempts = []
        for attempt in range(3):
            # An application retries after a short pause; the connector's forced refresh
            # (started by the failed connect) runs in the background meanwhile.
            if attempt:
                time.sleep(1)
            try:
                attempts.append(pg_user_is(pg8000(c, pg["rotate"], pg["user"], pg["password"]), pg["user"]))
                break
            except Exception as e:
                attempts.append(f"{type(e).__name__}: {e}")
        ok = before[0] and isinstance(attempts[-1], tuple) and attempts[-1][0] and len(attempts) <= 2
        return ok, {"before": before, "after": attempts}


case("client CA rotation recovered by the second attempt", rotation)

width = max(len(k) for k in results)
for name, r in results.items():
    print(f"{name:<{width}}  {'pass' if r['ok'] else 'FAIL'}", file=sys.stderr)
print(json.dumps(results))
