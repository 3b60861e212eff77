"""One `thinker sweep` as a user runs it, in a fresh directory with the default stores, measured.

    summary = sweep(["addition", "--trials", "50"], monitor=usage_monitor(device), deadline=420)
    summary["wall_seconds"], summary["finished"], summary["usage"]["gpu_util"]

With a `deadline` the sweep is stopped after that many seconds as Ctrl-C stops it (the running trials
end at their next log, the study and its runs are closed), and what it finished is still reported, as
`status: interrupted` with `stopped_at_deadline`: on a machine held for a few minutes, figures from a
cut sweep beat none from a killed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from thinker.bench.checkouts import ROOT, run_from
from thinker.errors import one_line

USAGE = ("gpu_util", "sm_activity", "sm_occupancy", "nvml_memory_mb", "power_w", "system_cpu_percent")
PATIENCE = 60.0  # seconds a stopped sweep gets to close its trials and runs before it is killed


class SweepFailed(RuntimeError):
    """The sweep under measurement ended with an error (its last line of stderr says which)."""


def sweep(args: list[str], source: Path | None = None, monitor=None, plot: Path | None = None,
          deadline: float | None = None, inspect: Callable[[Path, str], dict] | None = None) -> dict:
    """Run `thinker sweep ...` from the checkout `source` (this one by default) in a fresh directory;
    its JSON summary, the wall time and, given a monitor, the machine's use while it ran; given `plot`,
    the study's picture (`thinker report --plot`) is written there before the directory goes; given
    `deadline`, the sweep is stopped after that many seconds and reports what it finished; given
    `inspect`, it is called with the directory and the study's name once the sweep has ended (outside
    its wall time), and what it returns is the summary's `check`."""
    with tempfile.TemporaryDirectory() as tmp:
        if monitor is not None:
            monitor.start()
        started = time.perf_counter()
        # its own process group, so that a sweep which will not stop can be killed with its workers
        proc = subprocess.Popen([sys.executable, "-S", "-m", "thinker", "sweep", *args], cwd=tmp, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_from(source or ROOT),
                                start_new_session=True)
        cut = False
        try:
            stdout, stderr = proc.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            cut = True
            stdout, stderr = stop(proc)
        except KeyboardInterrupt:
            stop(proc)
            raise
        wall = time.perf_counter() - started
        usage = monitor.stop() if monitor is not None else {}
        if proc.returncode != 0 and not (cut and proc.returncode == 130):
            last = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise SweepFailed(f"thinker sweep {' '.join(args)} failed: {last}")
        summary = json.loads(stdout.strip().splitlines()[-1])
        if plot is not None:
            summary["plot_error"] = draw(summary["study"], f"sqlite:///{tmp}/optuna.db", plot)
        if inspect is not None:
            summary["check"] = inspect(Path(tmp), summary["study"])
    summary["stopped_at_deadline"] = cut
    summary["locked"] = "database is locked" in stderr
    summary["wall_seconds"] = round(wall, 1)
    summary["usage"] = {k: round(usage[k], 1) for k in USAGE if usage.get(k) is not None}
    return summary


def draw(study: str, storage: str, path: Path) -> str | None:
    """The study's picture at `path`; None, or why it could not be drawn: the figures count more than it."""
    from thinker.sweeps.plots import save  # noqa: PLC0415 - Optuna and matplotlib, for the sweep parts only
    from thinker.sweeps.report import open_study  # noqa: PLC0415

    try:
        save(open_study(study, storage), path)
    except Exception as e:  # noqa: BLE001 - a plot that fails loses the picture, not the sweep's figures
        print(f"bench: the study's picture was not drawn: {one_line(e)}", file=sys.stderr)
        return one_line(e)
    return None


def stop(proc: subprocess.Popen, patience: float = PATIENCE) -> tuple[str, str]:
    """End a sweep this bench started; its stdout and stderr. SIGTERM first, as Ctrl-C: the sweep ends its
    trials and workers, closes its runs, prints its summary. Past `patience` seconds, SIGKILL to its whole
    process group: killed alone, its workers would train on as orphans, holding its pipes open."""
    proc.terminate()
    try:
        return proc.communicate(timeout=patience)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate(timeout=30)
