#!/usr/bin/env bash
# Runs every test: formatting, lints, Rust unit tests, and the end-to-end tests against the local stack
# (moto + the infra/ templates + the real function binaries). Installs what it needs on a fresh machine.
source "$(dirname "$0")/tools/env.sh"
cd "$ROOT"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "template and workflow lint"
tests/tools/lint.sh

step "cargo build (host binaries the local stack runs)"
cargo build --workspace --bins --quiet

step "Rust unit tests"
log=$PALISADE_CACHE/cargo-test.log
cargo test --workspace >"$log" 2>&1 || { cat "$log"; exit 1; }
awk '/^test result:/ { p += $4; f += $6 } END { printf "Rust: %d passed, %d failed\n", p, f }' "$log"

step "quote extraction accuracy, per carrier layout and PDF producer (every fixture, field by field)"
cargo test --quiet -p pipeline-extract --test fixtures every_fixture_matches_its_json -- --nocapture 2>&1 \
  | sed -n '/^fixture accuracy/,/^all /p'

step "sam build: every function cross-compiled for arm64 (provided.al2023) with cargo lambda and zig"
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || rustup target add aarch64-unknown-linux-gnu
for t in compliance pipeline; do
  tests/tools/sam.sh build --template-file "infra/$t.yaml" --build-dir ".aws-sam/build-$t" \
    --cache-dir "$PALISADE_CACHE/sam-cache-$t" >"$PALISADE_CACHE/sam-build-$t.log" 2>&1 \
    || { tail -40 "$PALISADE_CACHE/sam-build-$t.log"; exit 1; }
done
python tests/tools/artifacts.py .aws-sam/build-compliance .aws-sam/build-pipeline

step "headless Chromium for the dashboard's browser test"
# Debian's chromium package; GitHub's Ubuntu runners already carry Google Chrome, which the test accepts too.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
# (Debian's wrapper script prints a shell warning on stderr for --version; the version line is on stdout)
{ command -v chromium || command -v chromium-browser || command -v google-chrome; } | xargs -I{} sh -c '{} --version 2>/dev/null'

step "end-to-end tests on the local stack"
PALISADE_BIN_DIR=$CARGO_TARGET_DIR/debug python -m pytest -c tests/pytest.ini -q "$@"
