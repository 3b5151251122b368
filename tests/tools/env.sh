# Shared set-up for tests/run.sh and tests/demo.sh: installs what they need on a fresh machine, idempotently.
# Sourced, not run. Everything is kept under $PALISADE_CACHE (default ~/.cache/palisade) so repeated runs reuse it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PALISADE_CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PALISADE_CACHE/target}
mkdir -p "$PALISADE_CACHE"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A virtualenv per requirements file, rebuilt only when the file changes.
venv() { # name requirements-file -> prints the venv's bin dir
  local name=$1 req=$2 dir stamp want
  dir=$PALISADE_CACHE/venv-$name
  want=$(sha256sum "$req" | cut -c1-16)
  stamp=$dir/.palisade-stamp
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing $name tools from $(basename "$req") into $dir" >&2
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" >"$stamp"
  fi
  echo "$dir/bin"
}

STACK_BIN=$(venv stack "$ROOT/tests/requirements.txt")
export PATH="$STACK_BIN:$PATH"
