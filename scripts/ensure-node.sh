#!/usr/bin/env bash
# Node.js and npm for the Node conformance suite (tests/conformance_node.rs runs Google's
# @google-cloud/cloud-sql-connector against the emulator). Installs Debian's nodejs and npm with
# apt-get when `node` or `npm` is missing. Idempotent.
set -euo pipefail
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  exit 0
fi
echo "[ensure-node] installing nodejs and npm"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
