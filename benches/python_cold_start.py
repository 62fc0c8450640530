"""Cold start of Google's Cloud SQL Python Connector (asyncpg), for benches/cold_start.rs.

One long-lived process, so that the interpreter's start and imports are not counted: for each
`round` line on stdin it times a brand-new connector's first row,

    create_async_connector() -> connect_async(..., "asyncpg") -> SELECT 1

then closes the connection and the connector, and prints `ms <milliseconds>` (or `error <text>`)
on stdout. `quit` ends it. The setup comes as JSON in the env var COLD_START:
{"admin_api": url, "instance": connection name, "user": ..., "db": ...}; credentials come from
GOOGLE_APPLICATION_CREDENTIALS as for any application.
"""
import asyncio
import json
import os
import sys
import time

from google.cloud.sql.connector import create_async_connector

cfg = json.loads(os.environ["COLD_START"])


async def one_round():
    started = time.perf_counter()
    connector = await create_async_connector(sqladmin_api_endpoint=cfg["admin_api"])
    conn = await connector.connect_async(cfg["instance"], "asyncpg", user=cfg["user"], db=cfg["db"])
    one = await conn.fetchval("SELECT 1")
    elapsed = time.perf_counter() - started
    assert one == 1, one
    await conn.close()
    await connector.close_async()
    return elapsed * 1000.0


async def main():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if command in ("", "quit"):
            return
        try:
            print(f"ms {await one_round():.3f}", flush=True)
        except Exception as e:  # reported to the driver, which stops the bench
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)


asyncio.run(main())
