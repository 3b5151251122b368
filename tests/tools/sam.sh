#!/usr/bin/env bash
# Runs the pinned SAM CLI (tests/requirements-lint.txt) from the repository root, with cargo-lambda and its zig
# (tests/requirements.txt) on PATH for `sam build`'s rust-cargolambda functions: tests/tools/sam.sh build,
# tests/tools/sam.sh deploy --config-env test, ... Settings are in samconfig.toml.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
LINT_BIN=$(venv lint "$ROOT/tests/requirements-lint.txt")
# The stack venv first: cargo-lambda finds zig through its `python3 -m ziglang`.
export PATH="$STACK_BIN:$LINT_BIN:$PATH"
export SAM_CLI_TELEMETRY=0
exec sam "$@"
