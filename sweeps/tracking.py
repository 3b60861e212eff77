"""MLflow for sweeps, eval and the bench: a run per trial, under its invocation's parent run.

    >>> uri = resolve_tracking_uri(None)  # doctest: +SKIP
    >>> tracker = Tracker(uri, "thinker-addition")  # doctest: +SKIP

This is the one module that imports MLflow. A trial's metrics are buffered and handed, once per
evaluation, to a background thread that sends them with one `log_batch` call, so training never
waits on the tracking store (a trial logs ~1,000 values; MLflow's own asynchronous `log_batch` made
trials 3-4% slower than this thread: bench/README.md). System metrics (CPU, memory, GPU with nvidia-ml-py)
come from MLflow's monitor, started by `mlflow.start_run(run_id=..., log_system_metrics=True)`. A sweep's
parent run is `coordinator`'s to start and end.

A tracking server shared by hundreds of workers is sometimes saturated: a trial's calls are tried
again with backoff (`patiently`), a metric batch that still fails is kept and sent again at the end,
and points never sent are counted (`TrialRun.unsent`: the trial's record, the sweep's summary).
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from thinker.errors import one_line
from thinker.sweeps.stores import (
    TrackingError,
    check_tracking,
    opened_together,
    redact,
    resolve_tracking_uri,
    with_backoff,
)

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's runs table, not GenAI
SYSTEM_METRICS_SECONDS = 2
BATCH_LIMIT = 1000  # MLflow's log_batch accepts at most 1000 metrics per call
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "KILLED": "KILLED"}  # trial state -> run status
TRIES, FIRST_DELAY = 6, 0.5  # a call to the tracking store is tried 6 times, 0.5 s doubling apart (~30 s)


def patiently(call):
    """`call()`, tried again with jittered backoff while it raises; the last error if every try failed."""
    return with_backoff(call, lambda e: True, first=FIRST_DELAY, most=float("inf"), tries=TRIES)


def client(uri: str, must_exist: bool = False) -> MlflowClient:
    """A client for `uri` once it is known to answer: a server that does not would hang MLflow's own
    retries for minutes, a scheme MLflow has no store for raises its own exception type, and an SQLite
    file of another kind (an Optuna database) would get MLflow's tables added. `must_exist`: a reader's
    store, which opening must not create."""
    check_tracking(uri, must_exist)
    try:
        found = _open(uri)
        found.search_experiments(max_results=1)  # the store opens here, not at the first real call
        return found
    except MlflowException as e:
        raise TrackingError(f"cannot use tracking URI {redact(uri)!r}: {redact(uri, one_line(e, 200))}") from None


def _open(uri: str) -> MlflowClient:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # would tear the live view
    return opened_together(lambda: MlflowClient(tracking_uri=uri))


class Tracker:
    """One process's connection to the tracking store, bound to one experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.client = uri, _open(uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment, tags=EXPERIMENT_KIND)
        except Exception as e:  # a race with another worker creating it, or an unusable store
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                raise TrackingError(f"cannot use tracking store {redact(uri)}: "
                                    f"{redact(uri, str(e).splitlines()[0])}") from None
            self.experiment_id = found.experiment_id
        if found is not None and found.lifecycle_stage == "deleted":
            raise TrackingError(f"MLflow experiment {experiment!r} is deleted (its name stays taken): restore it "
                                f"(mlflow experiments restore --experiment-id {found.experiment_id}) or pass "
                                f"--experiment NAME")

    def start_parent(self, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def start_trial(self, parent_id: str, number: int, params: dict, tags: dict[str, str]) -> TrialRun:
        run = patiently(lambda: self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:04d}",
            tags={"mlflow.parentRunId": parent_id, "optuna.trial_number": str(number), **tags}))
        flat = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        patiently(lambda: self.client.log_batch(run.info.run_id, params=flat))
        return TrialRun(self, run.info.run_id)

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        log_now(self.client, run_id, metrics)

    def log_files(self, run_id: str, files: dict[str, bytes | str], path: str | None = None) -> None:
        """Write `files` (name -> content) as artifacts of the run, under `path`."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                target = Path(tmp) / name
                target.write_bytes(content if isinstance(content, bytes) else content.encode())
            self.client.log_artifacts(run_id, tmp, path)

    def copy_artifacts(self, source_run: str, source_path: str, run_id: str, path: str) -> None:
        """Copy one run's artifact folder to another run (the best trial's checkpoint to the parent)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(source_run, source_path, tmp)
            self.client.log_artifacts(run_id, local, path)

    def status(self, run_id: str) -> str | None:
        """The run's status (RUNNING, FINISHED, FAILED, KILLED), or None if the store has no such run."""
        try:
            return self.client.get_run(run_id).info.status
        except MlflowException:
            return None

    def end(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        """Tag and terminate a run."""
        patiently(lambda: self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()]))
        patiently(lambda: self.client.set_terminated(run_id, status))


class TrialRun:
    """A child run that is also a trainer `Logger`: buffered, sent asynchronously at every evaluation;
    `sent`, `unsent`: metric points stored, and points that could not be sent after every retry."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.client, self.run_id = tracker, tracker.client, run_id
        self._buffer: list[Metric] = []
        self._queue: queue.Queue = queue.Queue()
        self._kept: list[list[Metric]] = []  # batches that failed every try: sent again at the end
        self._errors: list[str] = []
        self.sent = self.unsent = 0
        self.send_seconds: list[float] = []  # how long each batch took to send, retries included
        self._thread = threading.Thread(target=self._drain, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()
        self._active = _start_system_metrics(run_id, tracker.uri)

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if any(k.startswith("eval_") for k in metrics) or len(self._buffer) >= BATCH_LIMIT:
            self._queue.put(self._buffer)
            self._buffer = []

    def _send(self, batch: list[Metric]) -> bool:
        started = time.perf_counter()
        try:
            patiently(lambda: self.client.log_batch(self.run_id, metrics=batch))
        except Exception as e:  # keep training; the caller keeps the batch for the end
            return self._errors.append(one_line(e)) or False
        self.send_seconds.append(time.perf_counter() - started)
        self.sent += len(batch)
        return True

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not None:
            for i in range(0, len(batch), BATCH_LIMIT):
                if not self._send(batch[i:i + BATCH_LIMIT]):
                    self._kept.append(batch[i:i + BATCH_LIMIT])

    def close(self) -> None:
        """Send what is buffered, wait for the background thread, then send the kept batches once more."""
        if self._thread.is_alive():
            self._queue.put(self._buffer)  # an empty batch is no call
            self._buffer = []
            self._queue.put(None)
            self._thread.join()
        kept, self._kept = self._kept, []
        self.unsent += sum(len(batch) for batch in kept if not self._send(batch))

    def log_artifacts_from(self, folder: str, path: str) -> None:
        patiently(lambda: self.client.log_artifacts(self.run_id, folder, path))

    def finish(self, state: str, reason: str | None = None, metrics: dict[str, float] | None = None,
               step: int | None = None) -> None:
        """Close, record the final state (COMPLETE, PRUNED, FAIL, KILLED) and end the run."""
        self.close()
        try:
            patiently(lambda: log_now(self.client, self.run_id, metrics or {}, step))
        except Exception as e:  # the run still ends; the trial's figures are in its record too
            self._errors.append(one_line(e))
            self.unsent += len(metrics)
        tags = {"state": state}
        if reason:
            tags["fail_reason" if state != "PRUNED" else "prune_reason"] = reason[:5000]
        if self._errors:
            tags["logging_errors"] = "; ".join(self._errors)[:5000]
        if self.unsent:
            tags["unsent_points"] = str(self.unsent)
        status = RUN_STATUS.get(state, "FAILED")
        if self._active:
            mlflow.end_run(status)  # stops the system-metrics monitor too
            self._active = False
        self.tracker.end(self.run_id, status, tags)


def _start_system_metrics(run_id: str, uri: str) -> bool:
    """Attach to the run through MLflow's fluent API, which samples system metrics into it."""
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_SECONDS)
        mlflow.start_run(run_id=run_id, log_system_metrics=True)
        return True
    except Exception:  # system metrics are a nice-to-have; never fail a trial over them
        return False


def run_config(uri: str, run_id: str) -> dict:
    """The training config a trial run recorded (its `thinker.config` tag)."""
    text = _run(uri, run_id)[1].data.tags.get("thinker.config")
    if not text:
        raise TrackingError(f"MLflow run {run_id} is not a thinker trial (no thinker.config tag)")
    return json.loads(text)


def download_checkpoint(uri: str, run_id: str, dest: str) -> Path:
    """The model.pt a trial run (its `checkpoint/`) or a sweep's parent run (its `best_trial/`) holds."""
    found, _ = _run(uri, run_id)
    for folder in ("checkpoint", "best_trial"):
        try:
            return Path(found.download_artifacts(run_id, f"{folder}/model.pt", dest))
        except (MlflowException, OSError):
            continue
    raise TrackingError(f"MLflow run {run_id} holds no checkpoint (only completed trials save one)")


def _run(uri: str, run_id: str):
    """(a client, the run) from an existing store; TrackingError if it has no such run."""
    found = client(uri, must_exist=True)
    try:
        return found, found.get_run(run_id)
    except MlflowException:
        raise TrackingError(f"no MLflow run {run_id} in {redact(uri)}") from None


def log_metrics(uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to an existing run (a trial's, after the fact)."""
    found = client(uri, must_exist=True)
    try:
        log_now(found, run_id, metrics)
    except MlflowException as e:
        raise TrackingError(f"cannot log to MLflow run {run_id}: {one_line(e)}") from None


def log_now(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
    if entries:
        client.log_batch(run_id, metrics=entries)


def log_run(uri: str | None, experiment: str, name: str, params: dict, metrics: dict[str, float],
            tags: dict[str, str], document: dict, artifact: str) -> str:
    """One finished run with params, metrics, tags and a JSON document (the bench's); returns its id."""
    tracker = client(resolve_tracking_uri(uri))
    found = tracker.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else tracker.create_experiment(experiment, tags=EXPERIMENT_KIND)
    run_id = tracker.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    try:
        tracker.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        log_now(tracker, run_id, metrics)
        tracker.log_dict(run_id, document, artifact)
    except BaseException as e:  # never leave the run RUNNING: Ctrl-C ends it KILLED, an error FAILED
        tracker.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        if isinstance(e, MlflowException):
            raise TrackingError(f"cannot log to MLflow run {run_id}: {one_line(e)}") from None
        raise
    tracker.set_terminated(run_id, "FINISHED")
    return run_id


def flatten(values: dict, prefix: str = "") -> dict:
    """{"task_options": {"base": 16}} -> {"task_options.base": 16}.

    >>> flatten({"task_options": {"base": 16}, "lr": 0.1})
    {'task_options.base': 16, 'lr': 0.1}
    """
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

