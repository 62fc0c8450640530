"""Google's Cloud SQL Python Connector as a peer in benches/cold_start.rs (asyncpg and pg8000).

One long-lived process, so that the interpreter's start and imports are not counted. Each line on
stdin is a command; each answer is one line on stdout, `ms <milliseconds>` or `error <text>`:

- `cold asyncpg`: create_async_connector() -> connect_async(..., "asyncpg") -> SELECT 1, then the
  connection and the connector are closed. Every round's connector generates its own key.
- `cold pg8000`: Connector() -> connect(..., "pg8000") -> SELECT 1, the synchronous API (run on a
  worker thread, as a synchronous application would call it).
- `warm asyncpg` / `warm pg8000`: the same connect -> SELECT 1 on a connector made once before
  (its certificate cached), i.e. what every later connection of an application costs.
- `bulk asyncpg` / `bulk pg8000`: on a connection from that warm connector, the time of one bulk
  query (`bulk_sql`, every row fetched; the connect is not timed). The driver turns it into MB/s.
- `quit` (or end of input) ends it.

The setup comes as JSON in the env var COLD_START: {"admin_api": url, "instance": connection
name, "user": ..., "db": ..., "bulk_sql": ..., "bulk_bytes": bytes its rows hold}; credentials come from
GOOGLE_APPLICATION_CREDENTIALS as for any application.
"""
import asyncio
import json
import os
import sys
import time

from google.cloud.sql.connector import Connector, create_async_connector

cfg = json.loads(os.environ["COLD_START"])


async def asyncpg_first_row(connector):
    conn = await connector.connect_async(cfg["instance"], "asyncpg", user=cfg["user"], db=cfg["db"])
    one = await conn.fetchval("SELECT 1")
    assert one == 1, one
    return conn


def pg8000_first_row(connector):
    conn = connector.connect(cfg["instance"], "pg8000", user=cfg["user"], db=cfg["db"])
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    one = cursor.fetchone()[0]
    assert one == 1, one
    return conn


async def cold_asyncpg():
    started = time.perf_counter()
    connector = await create_async_connector(sqladmin_api_endpoint=cfg["admin_api"])
    conn = await asyncpg_first_row(connector)
    elapsed = time.perf_counter() - started
    await conn.close()
    await connector.close_async()
    return elapsed


def cold_pg8000():
    started = time.perf_counter()
    connector = Connector(sqladmin_api_endpoint=cfg["admin_api"])
    conn = pg8000_first_row(connector)
    elapsed = time.perf_counter() - started
    conn.close()
    connector.close()
    return elapsed


class Warm:
    """Connectors made once, their certificates cached by their first connection."""

    def __init__(self):
        self.asyncpg = None
        self.pg8000 = None

    async def asyncpg_round(self):
        if self.asyncpg is None:
            self.asyncpg = await create_async_connector(sqladmin_api_endpoint=cfg["admin_api"])
            await (await asyncpg_first_row(self.asyncpg)).close()
        started = time.perf_counter()
        conn = await asyncpg_first_row(self.asyncpg)
        elapsed = time.perf_counter() - started
        await conn.close()
        return elapsed

    def pg8000_round(self):
        if self.pg8000 is None:
            self.pg8000 = Connector(sqladmin_api_endpoint=cfg["admin_api"])
            pg8000_first_row(self.pg8000).close()
        started = time.perf_counter()
        conn = pg8000_first_row(self.pg8000)
        elapsed = time.perf_counter() - started
        conn.close()
        return elapsed

    async def asyncpg_bulk(self):
        if self.asyncpg is None:
            await self.asyncpg_round()
        conn = await asyncpg_first_row(self.asyncpg)
        started = time.perf_counter()
        rows = await conn.fetch(cfg["bulk_sql"])
        elapsed = time.perf_counter() - started
        await conn.close()
        read = sum(len(r[0]) for r in rows)
        assert read == cfg["bulk_bytes"], read
        return elapsed

    def pg8000_bulk(self):
        if self.pg8000 is None:
            self.pg8000_round()
        conn = pg8000_first_row(self.pg8000)
        cursor = conn.cursor()
        started = time.perf_counter()
        cursor.execute(cfg["bulk_sql"])
        rows = cursor.fetchall()
        elapsed = time.perf_counter() - started
        conn.close()
        read = sum(len(r[0]) for r in rows)
        assert read == cfg["bulk_bytes"], read
        return elapsed


async def main():
    loop = asyncio.get_running_loop()
    warm = Warm()
    commands = {
        "cold asyncpg": cold_asyncpg,
        "cold pg8000": lambda: loop.run_in_executor(None, cold_pg8000),
        "warm asyncpg": warm.asyncpg_round,
        "warm pg8000": lambda: loop.run_in_executor(None, warm.pg8000_round),
        "bulk asyncpg": warm.asyncpg_bulk,
        "bulk pg8000": lambda: loop.run_in_executor(None, warm.pg8000_bulk),
    }
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if command in ("", "quit"):
            break
        try:
            run = commands.get(command)
            if run is None:
                raise ValueError(f"unknown command {command!r}")
            print(f"ms {await run() * 1000.0:.3f}", flush=True)
        except Exception as e:  # reported to the driver, which stops the bench
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)
    if warm.asyncpg is not None:
        await warm.asyncpg.close_async()
    if warm.pg8000 is not None:
        warm.pg8000.close()


asyncio.run(main())
