#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI runs exactly this (.ci/run).
#
# Needs root on a Debian 12 machine with a Rust toolchain: it apt-get installs Debian packages,
# starts a private PostgreSQL on 127.0.0.1, builds Salt in a venv, and the SSH tests create
# network namespaces. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "Debian packages"
pkgs=(facter openssh-server openssh-client iproute2 postgresql libssl-dev pkg-config procps)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v rustup >/dev/null && rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "PostgreSQL (private cluster on 127.0.0.1)"
AUTO_TEST_PG_URL=$(scripts/pg.sh start)
export AUTO_TEST_PG_URL AUTO_TEST_REQUIRE_PG=1
cleanup() { scripts/pg.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "build (the tests load the real .so files)"
cargo build --workspace --quiet

step "cargo test --workspace"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

step "OpenAPI document against the live server (schemathesis)"
schema_status=0
scripts/schemathesis.sh || schema_status=$?

passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
[ "$schema_status" = 0 ] && passed=$((passed + 1)) || failed=$((failed + 1))
echo
echo "tests: $passed passed, $failed failed"
[ "$status" = 0 ] && [ "$schema_status" = 0 ]
