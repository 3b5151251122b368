#!/usr/bin/env bash
# The local demo, end to end: builds the functions, starts moto, creates the stacks from infra/ and runs the real
# binaries; then seeds violating resources, runs scans and sweeps over simulated days, and shows reminders,
# enforcement, undo and the ledger. Installs what it needs on a fresh machine.
source "$(dirname "$0")/tools/env.sh"
cd "$ROOT"
step "cargo build (the function binaries)"
cargo build --workspace --bins --quiet
step "local stack and demo"
PALISADE_BIN_DIR=$CARGO_TARGET_DIR/debug exec python tests/local/demo.py "$@"
