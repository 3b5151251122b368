#!/usr/bin/env bash
# Robustness check of the PDF text extractor against the real-world corpus in ../shared/pdfs-wild (70 files:
# encryption, CJK, damaged and hostile PDFs; see its README). Builds the release binary and runs
# `pipeline-extract text FILE` on every file under the corpus's time and memory limits.
#
# Usage: bench/pdfs-wild.sh [-v]      (-v also lists the files that pass)
# The corpus lives beside the repository, not in it; without it this script says so and exits 0.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus="$root/../shared/pdfs-wild"
if [ ! -x "$corpus/check.sh" ]; then
  echo "SKIPPED: the pdfs-wild corpus is not at $corpus (it lives in the project's shared folder, beside the repository)." >&2
  exit 0
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/palisade/target}
echo "building pipeline-extract (release)..." >&2
cargo build --release --quiet -p pipeline-extract --manifest-path "$root/Cargo.toml"
bin="$CARGO_TARGET_DIR/release/pipeline-extract"
echo "checking $bin text FILE against $corpus" >&2
exec "$corpus/check.sh" "$@" -- "$bin" text
