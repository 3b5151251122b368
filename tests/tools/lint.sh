#!/usr/bin/env bash
# Lints what deploys without reaching AWS: every infra/*.yaml template (sam validate --lint, cfn-lint, checkov)
# and every GitHub Actions workflow (actionlint, with shellcheck for `run:` steps). Prints one line per tool and,
# under a failing tool, its findings; exits non-zero if any tool found anything.
source "$(dirname "$0")/env.sh"
cd "$ROOT"

LINT_BIN=$(venv lint "$ROOT/tests/requirements-lint.txt")
CHECKOV_BIN=$(venv checkov "$ROOT/tests/requirements-checkov.txt")
export PATH="$LINT_BIN:$PATH" # actionlint finds shellcheck on PATH
export SAM_CLI_TELEMETRY=0

shopt -s nullglob
templates=(infra/*.yaml)
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#templates[@]} -gt 0 ] || { echo "no templates in infra/" >&2; exit 1; }

failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# result NAME SUMMARY: runs the rest of the arguments, prints "NAME: ok|FAILED (SUMMARY)" and the findings.
result() {
  local name=$1 summary=$2
  shift 2
  if "$@" >"$out" 2>&1; then
    printf '%-36s ok (%s)\n' "$name:" "$summary"
  else
    printf '%-36s FAILED (%s)\n' "$name:" "$summary"
    sed 's/^/    /' "$out"
    failed=1
  fi
}

sam_validate() {
  local t rc=0
  for t in "${templates[@]}"; do
    "$LINT_BIN/sam" validate --lint --template "$t" --region eu-west-1 || rc=1
  done
  return "$rc"
}
result "sam validate --lint $("$LINT_BIN/sam" --version | awk '{print $NF}')" "${#templates[@]} templates" sam_validate

result "cfn-lint $("$LINT_BIN/cfn-lint" --version | awk '{print $NF}')" "${#templates[@]} templates" \
  "$LINT_BIN/cfn-lint" "${templates[@]}"

# --skip-download: no calls to the vendor's platform (there is no network in CI, and nothing there we need).
checkov_args=()
for t in "${templates[@]}"; do checkov_args+=(-f "$t"); done
checkov_run() {
  "$CHECKOV_BIN/checkov" "${checkov_args[@]}" --framework cloudformation --quiet --compact --skip-download
}
checkov_summary() {
  awk -F'[:,] *' '/^Passed checks:/ { p += $2; f += $4; s += $6 } END { printf "%d passed, %d failed, %d skipped", p, f, s }' "$out"
}
if checkov_run >"$out" 2>&1; then
  printf '%-36s ok (%s templates, %s)\n' "checkov $("$CHECKOV_BIN/checkov" --version):" "${#templates[@]}" "$(checkov_summary)"
else
  printf '%-36s FAILED (%s templates, %s)\n' "checkov $("$CHECKOV_BIN/checkov" --version):" "${#templates[@]}" "$(checkov_summary)"
  sed 's/^/    /' "$out"
  failed=1
fi

if [ ${#workflows[@]} -gt 0 ]; then
  result "actionlint $("$LINT_BIN/actionlint" -version | awk 'NR==1 {print $NF}')" "${#workflows[@]} workflows" \
    "$LINT_BIN/actionlint" "${workflows[@]}"
else
  echo "actionlint: no workflows in .github/workflows" >&2
  failed=1
fi

exit $failed
