#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI runs exactly this (.ci/run).
#
# Needs root on a Debian 12 machine with a Rust toolchain: it apt-get installs Debian packages,
# starts a private PostgreSQL on 127.0.0.1, builds Salt in a venv, and the SSH tests create
# network namespaces. Everything it starts, it stops.
#
# Runs the tests that need root, sshd or Salt (AUTO_CLIENT_E2E=1; without it they are reported as
# ignored) and the collectors' live tests that read this machine (#[ignore] in plain `cargo test`).
# Ends with `tests: N passed, N failed, N skipped` over every runner: libtest's and the ssh-exec
# and salt-exec harnesses' results, shellcheck and schemathesis; every skip is listed by name.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# The tests that need root, sshd hosts in namespaces or Salt run here; none may skip itself quietly.
export AUTO_CLIENT_E2E=1
unset AUTO_SALT_SKIP

step() { printf '\n==> %s\n' "$*"; }

step "Debian packages"
# pciutils: lspci, the independent tool of the gpu and controller collectors' live parity tests
# (and pci.ids, the names the controller collector looks up); sqlite3: the retention test's
# integrity check of a pruned database; util-linux (lsblk), tar and xz-utils: the disk collector's
# parity tests against lsblk on util-linux's recorded sysfs dumps (.tar.xz)
pkgs=(facter openssh-server openssh-client iproute2 postgresql libssl-dev pkg-config procps shellcheck chromium chromium-driver systemd dpkg-dev pciutils sqlite3 util-linux tar xz-utils)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "shellcheck scripts/*.sh"
shellcheck_status=0
shellcheck scripts/*.sh || shellcheck_status=$?

step "PostgreSQL (private cluster on 127.0.0.1)"
AUTO_TEST_PG_URL=$(scripts/pg.sh start)
export AUTO_TEST_PG_URL AUTO_TEST_REQUIRE_PG=1
cleanup() { scripts/pg.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "build (the tests load the real .so files)"
cargo build --workspace --quiet

step "Debian packages: build, dpkg -i, run the installed server and agent, purge (scripts/package-test.sh)"
package_status=0
scripts/package-test.sh || package_status=$?

# --include-ignored: the collectors' live tests (#[ignore]: they read this machine) run too.
step "cargo test --workspace -- --include-ignored"
set +e
cargo test --workspace --no-fail-fast -- --include-ignored 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e

step "OpenAPI document against the live server (schemathesis)"
schema_status=0
AUTO_SERVER_BIN=$PWD/target/debug/auto-server scripts/schemathesis.sh || schema_status=$?

# libtest's (and libtest-mimic's) summary lines: "test result: ok. 3 passed; 0 failed; 1 ignored; ..."
count() { grep -E '^test result:' target/test-output.txt | grep -Eo "[0-9]+ $1" | awk '{s+=$1} END {print s+0}'; }
passed=$(count passed)
failed=$(count failed)
skipped=$(count ignored)
for s in "$shellcheck_status" "$schema_status" "$package_status"; do
  if [ "$s" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
# A test binary that did not build or run gives no summary line: count it as a failure.
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi

echo
if [ "$skipped" != 0 ]; then
  echo "skipped:"
  grep -E '^test .* \.\.\. +ignored' target/test-output.txt | sed 's/^test /  /' || true
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$status" = 0 ] && [ "$schema_status" = 0 ] && [ "$shellcheck_status" = 0 ] && [ "$package_status" = 0 ]
