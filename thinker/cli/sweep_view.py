"""What `thinker sweep` shows while it runs, and where to look afterwards.

In a terminal: the overall bar (finished trials, best value, ETA) and under it one live line per
running trial of this invocation (its key parameters, samples against its budget, held-out exact
match, samples/s, device); a trial that ends leaves a one-line record above the bars. Piped or in a
container's log: no redraws, the same records and a plain status line every `PLAIN_SECONDS`.
Everything is read from the Optuna storage, polled once a second, so it shows trials of any worker
process this invocation started.
"""

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn

from thinker.cli.progress import Poller, progress_bar, stderr

PLAIN_SECONDS = 30.0
SHORT = {"batch_size": "bs", "latent": "lat", "d_model": "d", "n_layers": "layers", "n_heads": "heads",
         "warmup_samples": "warmup", "clip_norm": "clip", "weight_decay": "wd"}


def short_params(params: dict, limit: int = 6) -> str:
    """`lr=3.1e-03 bs=64 steps=2 ...`: a trial's parameters in a few characters each.

    >>> short_params({"lr": 0.0031234, "batch_size": 64, "steps": 2})
    'lr=3.1e-03 bs=64 steps=2'
    """
    parts = []
    for name, value in list(params.items())[:limit]:
        if isinstance(value, float):
            value = f"{value:.1e}" if abs(value) < 0.01 else f"{value:.3g}"
        parts.append(f"{SHORT.get(name, name)}={value}")
    return " ".join(parts)


def duration(seconds: float | None) -> str:
    """`1h02m`, `4m05s`, `12s`; `-` when unknown.

    >>> duration(3725), duration(245), duration(None)
    ('1h02m', '4m05s', '-')
    """
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def record(ended) -> str:
    """The line a finished trial leaves behind."""
    what = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[ended.state]
    value = f" value {ended.value:.4g}" if ended.value is not None else ""
    reason = f": {ended.reason[:80]}" if ended.state != "COMPLETE" and ended.reason else ""
    return f"  #{ended.number} {what}{value} in {duration(ended.seconds)}{reason}"


@dataclass
class Forecast:
    """The first ETA the sweep gave (after its first finished trial), to set against the actual time."""

    started: float = field(default_factory=lambda: time.monotonic())
    predicted_total: float | None = None
    made_after: float | None = None

    def note(self, eta: float | None) -> None:
        if eta is not None and self.predicted_total is None:
            self.made_after = time.monotonic() - self.started
            self.predicted_total = self.made_after + eta

    def summary(self) -> str | None:
        if self.predicted_total is None:
            return None
        actual = time.monotonic() - self.started
        return (f"ETA: predicted {duration(self.predicted_total)} in all (after {duration(self.made_after)}), "
                f"took {duration(actual)}")


@contextlib.contextmanager
def watch_trials(started, log_file: Path | None, forecast: Forecast):
    """The live view for `run_sweep(watch=...)`; notes its first ETA in `forecast` for the summary."""
    from thinker.sweeps.logs import start_log_file  # noqa: PLC0415
    from thinker.sweeps.standing import eta_seconds, expected_finished, standing  # noqa: PLC0415 - Optuna
    from thinker.sweeps.stores import redact  # noqa: PLC0415
    from thinker.sweeps.study import open_storage  # noqa: PLC0415

    settings = started.settings
    start_log_file()
    stderr.print(f"sweep {settings.study!r}: {started.finished_before}/{settings.trials} trials finished; storage "
                 f"{redact(settings.storage)}; tracking {redact(settings.tracking_uri)} "
                 f"(parent run {started.parent_run_id})")
    threads = f"{settings.threads} thread{'s' if settings.threads != 1 else ''}" if settings.threads else \
        "torch's default threads"
    stderr.print(f"workers: {settings.jobs} on this machine, {threads} each ({settings.placement})")
    if log_file is not None:
        stderr.print(f"MLflow's and Optuna's own messages: {log_file}")
    storage = open_storage(settings.storage, heartbeat=False)
    single = settings.single_objective
    reported: set[int] = {e.number for e in standing(settings.study, storage, None, single).ended}
    overall = progress_bar("trials")
    overall_id = overall.add_task(settings.study, total=settings.trials, completed=started.finished_before,
                                  extra="best -")
    trials = Progress(TextColumn("  {task.description}"), BarColumn(bar_width=24),
                      TextColumn("{task.completed:>9,.0f}/{task.total:,.0f}  {task.fields[extra]}"), console=stderr)
    shown: dict[int, object] = {}
    last_plain = [0.0]

    def update() -> None:
        now = standing(settings.study, storage, started.parent_run_id, single)
        eta = eta_seconds(now, settings.trials, settings.jobs)
        forecast.note(eta)
        best = f"{now.best[0]:.4g} (#{now.best[1]})" if now.best else "-"
        status = f"best {best}  running {len(now.running)}  ETA {duration(eta)}"
        total = expected_finished(now, settings.trials)
        for ended in now.ended:
            if ended.number not in reported:
                reported.add(ended.number)
                stderr.print(record(ended))
        if stderr.is_terminal:
            overall.update(overall_id, completed=now.finished, total=total, extra=status)
            running = {r.number: r for r in now.running}
            for number in [n for n in shown if n not in running]:
                trials.remove_task(shown.pop(number))
            for r in now.running:
                em = f"{r.exact_match:.2%}" if r.exact_match is not None else "-"
                speed = f"{r.samples_per_s:,.0f}/s" if r.samples_per_s else "-"
                extra = f"exact match {em}  {speed}  {r.device}  {duration(r.seconds)}"
                if r.number not in shown:
                    shown[r.number] = trials.add_task(f"#{r.number} {short_params(r.params)}", total=r.budget or 1,
                                                      extra=extra)
                trials.update(shown[r.number], completed=r.samples, total=r.budget or 1, extra=extra)
        elif time.monotonic() - last_plain[0] >= PLAIN_SECONDS:
            last_plain[0] = time.monotonic()
            stderr.print(f"sweep {settings.study!r}: {now.finished}/{total} finished, {status}")

    view = Live(Group(overall, trials), console=stderr, refresh_per_second=4, transient=True) \
        if stderr.is_terminal else contextlib.nullcontext()
    with view, Poller(update):
        yield
