#!/usr/bin/env bash
# System libraries some optional features build against: tiberius' Kerberos integrated auth
# (cloudsql-mssql feature `integrated-auth-gssapi`) needs GSSAPI headers and libclang (bindgen).
# Installs them with apt-get when missing. Idempotent.
set -euo pipefail
missing=()
for pkg in libkrb5-dev libclang-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[ensure-build-deps] installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
