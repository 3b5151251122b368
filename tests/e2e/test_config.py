"""Every function fails its cold start at once, naming every missing variable, rather than on its first message."""
import os
import subprocess

import pytest

BIN = os.environ.get("PALISADE_BIN_DIR", "")
FUNCTIONS = sorted(d for d in os.listdir(os.path.join(os.path.dirname(__file__), "..", "..", "functions"))
                   if not d.startswith("."))


@pytest.mark.parametrize("crate", FUNCTIONS)
def test_missing_configuration_is_reported_whole_at_start(crate):
    exe = os.path.join(BIN, crate)
    if not os.path.exists(exe):
        pytest.fail(f"{exe} is not built")
    # pipeline-extract treats arguments as CLI commands; with none it starts as a Lambda like the others
    p = subprocess.run([exe], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    err = p.stderr
    for var in ("AWS_LAMBDA_FUNCTION_NAME", "PALISADE_DLQ_URL", "PALISADE_LEDGER_TABLE"):
        assert var in err, f"{crate}: {var} not named in: {err[:500]}"
    assert "is not set" in err
