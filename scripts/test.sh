#!/usr/bin/env bash
# The full test suite: provisions the password-checking PostgreSQL, then runs every test of the
# workspace (unit, integration, doc tests) against the emulator and the real local databases.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-databases.sh
bash scripts/ensure-build-deps.sh
bash scripts/ensure-node.sh
bash scripts/scram-postgres.sh
bash scripts/mysql-test-user.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast
fi
cargo test --workspace --all-features --doc
# The core without its default features: no google-cloud-auth (key files and ADC through the
# connector's own OAuth2 exchange) and no hickory (names needing DNS fail with a config error).
cargo test --quiet -p cloudsql-core --no-default-features --lib

# The examples the README lists must keep working.
for example in quickstart mysql_async_pool sqlx_postgres sqlx_mysql; do
  echo "--- cargo run --example $example"
  cargo run --quiet --example "$example"
done

# DNS failover: a TXT record switched at run time closes the open connection and the next
# connect lands on the other instance.
echo "--- cargo run --example dns_failover"
cargo run --quiet --example dns_failover

# The telemetry example needs its feature.
echo "--- cargo run --example telemetry --features telemetry"
cargo run --quiet --example telemetry --features telemetry

# The ORM examples need their features.
echo "--- cargo run --example seaorm --features sea-orm"
cargo run --quiet --example seaorm --features sea-orm
echo "--- cargo run --example diesel_async --features diesel-async"
cargo run --quiet --example diesel_async --features diesel-async
