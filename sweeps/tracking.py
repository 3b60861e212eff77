"""MLflow tracking for sweeps: a parent run per invocation, a child run per trial.

    >>> uri = resolve_tracking_uri(None)  # doctest: +SKIP
    >>> tracker = Tracker(uri, "thinker-addition")  # doctest: +SKIP

Logging is batched and asynchronous: a trial's metrics are buffered and handed to a background
thread at every evaluation, which sends them with one `log_batch` call. Training never waits on
the tracking store (one `log_metric` call costs ~15 ms on the SQLite store; a trial logs ~1,000
values). Everything MLflow is imported inside this module, which the trainer never imports.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from sweeps.storage import redact

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's runs table, not GenAI
SYSTEM_METRICS_SECONDS = 2
DEFAULT_DB = "mlflow.db"  # MLflow's default tracking store since 3.7: sqlite:///mlflow.db
BATCH_LIMIT = 1000  # MLflow's log_batch accepts at most 1000 metrics per call


class TrackingError(ValueError):
    """The tracking store cannot be used (unreachable server, bad URI)."""


def resolve_tracking_uri(uri: str | None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else MLflow's default store: mlflow.db in this directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    # MLflow's default store, spelled with an absolute path: MLflow caches stores by URI, so a
    # relative one would keep pointing at whichever directory first used it.
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def check_tracking(uri: str) -> None:
    """Fail fast, writing nothing, when a tracking server does not answer."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                if response.status == 200:
                    return
                raise TrackingError(f"tracking server {redact(uri)} answered {response.status} on /health")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"tracking server {redact(uri)} is unreachable ({reason})") from None
    scheme = uri.split(":", 1)[0]
    if "://" not in uri and scheme not in ("databricks",):
        raise TrackingError(f"tracking URI {redact(uri)!r} is not a URI (expected e.g. sqlite:///mlflow.db)")


class Tracker:
    """One process's connection to the tracking store, bound to one experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        quiet_mlflow()
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment, tags=EXPERIMENT_KIND)
        except Exception as e:  # a race with another worker creating it, or an unusable store
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                raise TrackingError(f"cannot use tracking store {redact(uri)}: {str(e).splitlines()[0]}") from None
            self.experiment_id = found.experiment_id

    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def start_trial(self, parent_id: str, number: int, params: dict, tags: dict[str, str]) -> TrialRun:
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:04d}",
            tags={"mlflow.parentRunId": parent_id, "optuna.trial_number": str(number), **tags})
        run_id = run.info.run_id
        from mlflow.entities import Param  # noqa: PLC0415

        flat = flatten(params)
        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])
        return TrialRun(self, run_id)

    def finish_parent(self, run_id: str, status: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        log_now(self.client, run_id, metrics)
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, status)

    def log_artifacts(self, run_id: str, files: dict[str, bytes | str], path: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                target = Path(tmp) / name
                target.write_bytes(content if isinstance(content, bytes) else content.encode())
            self.client.log_artifacts(run_id, tmp, path)


class TrialRun:
    """A child run that is also a trainer `Logger`: buffered, flushed asynchronously at evaluations."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.client, self.run_id = tracker, tracker.client, run_id
        self._buffer: list = []
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[str] = []
        self._thread = threading.Thread(target=self._drain, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()
        self._monitor = _system_monitor(run_id, tracker.uri)

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if any(k.startswith("eval_") for k in metrics) or len(self._buffer) >= BATCH_LIMIT:
            self._queue.put(self._buffer)
            self._buffer = []

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not None:
            for i in range(0, len(batch), BATCH_LIMIT):
                try:
                    self.client.log_batch(self.run_id, metrics=batch[i:i + BATCH_LIMIT])
                except Exception as e:  # keep training; report at the end
                    self._errors.append(str(e).splitlines()[0])

    def close(self) -> None:
        """Send what is buffered and wait for the background thread."""
        if self._thread.is_alive():
            if self._buffer:
                self._queue.put(self._buffer)
                self._buffer = []
            self._queue.put(None)
            self._thread.join()
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def finish(self, state: str, reason: str | None = None, metrics: dict[str, float] | None = None,
               step: int | None = None) -> None:
        """Close, record the final state (COMPLETE, PRUNED, FAIL, KILLED) and end the run."""
        self.close()
        if metrics:
            log_now(self.client, self.run_id, metrics, step)
        self.client.set_tag(self.run_id, "state", state)
        if reason:
            self.client.set_tag(self.run_id, "fail_reason" if state != "PRUNED" else "prune_reason", reason[:5000])
        if self._errors:
            self.client.set_tag(self.run_id, "logging_errors", "; ".join(self._errors)[:5000])
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "KILLED": "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(self.run_id, status)


def quiet_mlflow() -> None:
    """MLflow's INFO lines and download bars would bury the sweep's own progress bar."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def log_now(client, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    from mlflow.entities import Metric  # noqa: PLC0415

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
    if entries:
        client.log_batch(run_id, metrics=entries)


def flatten(values: dict, prefix: str = "") -> dict:
    """{"task_options": {"base": 16}} -> {"task_options.base": 16}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _system_monitor(run_id: str, uri: str):
    """CPU, memory (and GPU through nvidia-ml-py, where present) sampled into the run."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: PLC0415

        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_SECONDS, tracking_uri=uri)
        monitor.start()
        return monitor
    except Exception:  # system metrics are a nice-to-have; never fail a trial over them
        return None


def config_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True)
