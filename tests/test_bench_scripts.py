"""Every benchmark script imports and parses its arguments (cheap guard; never runs a benchmark)."""

from __future__ import annotations

import subprocess
import sys

from support import REPO_ROOT

BENCH = REPO_ROOT / "bench"

# One interpreter for all scripts: each runs as __main__ with --help, which exits 0 after printing usage.
_RUNNER = """
import contextlib, io, runpy, sys
sys.path.insert(0, sys.argv[1])
failed = []
for script in sys.argv[2:]:
    sys.argv = [script, "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
        failed.append(f"{script}: --help did not exit")
    except SystemExit as exc:
        if exc.code not in (0, None) or "usage" not in out.getvalue().lower():
            failed.append(f"{script}: exit {exc.code}")
    except Exception as exc:
        failed.append(f"{script}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def test_every_bench_script_parses_help():
    scripts = sorted(str(p) for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 10
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(BENCH), *scripts], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", done.stdout
