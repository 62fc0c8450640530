#!/usr/bin/env bash
# Provisions a PostgreSQL cluster that really checks passwords (scram-sha-256 on every TCP login),
# on 127.0.0.1:55432, for tests of password and IAM logins. The machine's shared PostgreSQL may
# trust every loopback login, which would hide authentication bugs. Idempotent.
#
# Superuser: postgres / cloudsql-scram-admin (tests create their own roles with it).
set -euo pipefail

PORT=55432
NAME=cloudsql_scram
ADMIN_PASSWORD=cloudsql-scram-admin

log() { echo "[scram-postgres] $*"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ ! -d "/etc/postgresql/$version/$NAME" ]; then
  log "creating cluster $version/$NAME on port $PORT"
  pg_createcluster "$version" "$NAME" -p "$PORT" -- --auth-host=scram-sha-256 --auth-local=peer >/dev/null
  conf="/etc/postgresql/$version/$NAME/postgresql.conf"
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "password_encryption = 'scram-sha-256'"
    echo "max_connections = 300"
    echo "shared_buffers = 32MB"
  } >>"$conf"
fi
if ! listening "$PORT"; then
  log "starting cluster $version/$NAME"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$NAME" start
fi
for _ in $(seq 1 60); do listening "$PORT" && break; sleep 1; done
listening "$PORT" || { log "ERROR: cluster did not come up on $PORT"; exit 1; }
runuser -u postgres -- psql -q -p "$PORT" -c "ALTER USER postgres PASSWORD '$ADMIN_PASSWORD'" >/dev/null
log "ready on 127.0.0.1:$PORT (scram-sha-256)"
