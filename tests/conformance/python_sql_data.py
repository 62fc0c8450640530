"""Google's Cloud SQL Python Connector 1.23 with ip_type="sql_data" (pg8000, pymysql) against the
cloudsql-rs emulator's SQL Data Service.

Run by tests/conformance_python_sql_data.rs with the setup in the JSON env var CONFORMANCE; gRPC
trusts the emulator's CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH. Each case records whether
the connector behaved as against real Cloud SQL ("ok") and what happened ("detail"); one JSON
object goes to stdout (last line).
"""
import faulthandler
import json
import os
import traceback

# A hang shows where it is instead of running into the test's timeout.
faulthandler.dump_traceback_later(90, exit=True)

from google.cloud.sql.connector import Connector

cfg = json.loads(os.environ["CONFORMANCE"])
results = {}


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


def connector():
    return Connector(
        sqladmin_api_endpoint=cfg["admin_api"],
        sql_data_endpoint=cfg["sql_data"],
        ip_type="sql_data",
    )


def pg8000_password():
    with connector() as c:
        conn = c.connect(cfg["pg"]["tunnel"], "pg8000", user=cfg["pg"]["user"],
                         password=cfg["pg"]["password"], db="postgres")
        got = query(conn, "SELECT current_user::text, sum(i)::int FROM generate_series(1, 100) i")
        return got == [cfg["pg"]["user"], 5050], got


def pg8000_automatic_iam():
    with connector() as c:
        conn = c.connect(cfg["pg"]["tunnel"], "pg8000", user=cfg["sa_email"], db="postgres",
                         enable_iam_auth=True)
        got = query(conn, "SELECT current_user::text, 1")
        return got == [cfg["pg"]["iam_user"], 1], got


def pymysql_password():
    with connector() as c:
        conn = c.connect(cfg["mysql"]["tunnel"], "pymysql", user=cfg["mysql"]["user"],
                         password=cfg["mysql"]["password"], db=cfg["mysql"]["db"])
        got = query(conn, "SELECT CURRENT_USER(), 40 + 2")
        return got == [f"{cfg['mysql']['user']}@%", 42], got


def fallback():
    with connector() as c:
        conn = c.connect(cfg["pg"]["unsupported"], "pg8000", user=cfg["pg"]["user"],
                         password=cfg["pg"]["password"], db="postgres")
        got = query(conn, "SELECT 7")
        return got == [7], got


case("pg8000 password through the tunnel", pg8000_password)
case("pg8000 automatic IAM through the tunnel", pg8000_automatic_iam)
case("pymysql password through the tunnel", pymysql_password)
case("FAILED_PRECONDITION falls back to direct TLS", fallback)

for name, r in results.items():
    print(f"{'ok ' if r['ok'] else 'BAD'} {name}: {r['detail'][:300]}", file=os.sys.stderr)
print(json.dumps(results), flush=True)
