"""`thinker bench` on a tiny CPU preset, its error paths and its parts: `pytest tests/test_bench.py`.

GPU checks (NVML sampling, CUDA memory fields) run only where CUDA is: `pytest -m gpu`.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import thinker.bench.suite
from thinker.bench.nvml import GpuMonitor
from thinker.bench.peaks import gpu_peak, peak_tflops
from thinker.bench.report import log_mlflow
from thinker.bench.suite import _plateau, run_suite
from thinker.cli import app
from thinker.training import TrainConfig

runner = CliRunner()
TINY = ["--device", "cpu", "--task", "copy", "-o", "alphabet=5", "-o", "length=4", "--d-model", "32",
        "--n-heads", "2", "--n-layers", "1", "--latent", "2", "--steps", "1", "--warmup", "1", "--iters", "3",
        "--min-seconds", "0"]
ROW_FIELDS = ("variant", "device", "batch_size", "samples_per_s", "tokens_per_s", "step_ms", "wall_step_ms",
              "data_ms", "forward_ms", "backward_ms", "peak_memory_mb", "mfu", "speedup", "status")


def tiny_config(**overrides) -> TrainConfig:
    values = dict(task="copy", task_options={"alphabet": 5, "length": 4}, d_model=32, n_heads=2, n_layers=1,
                  latent=2, steps=1, device="cpu")
    return TrainConfig.from_dict({**values, **overrides})


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bench_table_then_json_with_consistent_rows(tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", *TINY, "--variants", "eager,tf32,fused", "--batch-sizes", "128",
                                 "--json", str(out), "--profile", str(tmp_path / "trace")])
    assert result.exit_code == 0, result.output
    doc = last_json(result)
    assert doc == json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["gpu"] is None
    rows = {row["variant"]: row for row in doc["rows"]}
    assert list(rows) == ["eager", "tf32", "fused", "batch=128"]
    assert "skipped: tf32 needs CUDA" in result.stdout.rsplit("\n", 2)[0]  # the table, before the JSON line

    assert rows["tf32"]["status"] == "skipped: tf32 needs CUDA" and rows["tf32"]["tokens_per_s"] is None
    for row in (rows["eager"], rows["fused"], rows["batch=128"]):
        assert row["status"] == "ok"
        assert all(field in row for field in ROW_FIELDS + ("cpu_percent", "rss_mb"))
        phases = row["data_ms"] + row["forward_ms"] + row["backward_ms"]
        assert phases == pytest.approx(row["step_ms"], rel=0.05)
        assert row["wall_step_ms"] > 0 and row["wall_ratio"] > 0
        assert 0 < row["mfu"] <= 1
        assert row["tokens_per_s"] == pytest.approx(row["samples_per_s"] * doc["seq_len"])
        assert row["peak_memory_mb"] > 0 and row["cpu_percent"] is not None
    assert rows["eager"]["speedup"] == 1.0 and rows["eager"]["peak_source"].startswith(("probe", "ISA bound"))
    assert doc["cpu"] and isinstance(doc["cpu_vector"], list) and doc["cpu_threads"] >= 1 and doc["torch"]
    assert doc["machine"].startswith(doc["cpu"])
    assert rows["batch=128"]["batch_size"] == 128 and rows["batch=128"]["base"] in ("eager", "fused")
    trace = tmp_path / "trace" / "trace-eager.json"
    assert '"forward"' in trace.read_text() and rows["eager"]["trace"] == str(trace)
    ops = trace.with_suffix(".txt").read_text()
    assert ops.startswith("5 steps of batch 64, ops by self_cpu_time_total") and "aten::mm" in ops
    assert rows["fused"]["trace"] == str(tmp_path / "trace" / "trace-fused.json")  # every variant row
    assert "trace" not in rows["batch=128"] and "trace" not in rows["tf32"]  # not the scan, not a skipped row


def test_attention_variants_run_the_other_kernel_and_skip_the_one_eager_runs(monkeypatch):
    kernels = []
    real = thinker.bench.suite.measure

    def spy(variant, cfg, *args, **kwargs):
        kernels.append((variant.name, cfg.model.attention))
        return real(variant, cfg, *args, **kwargs)

    monkeypatch.setattr(thinker.bench.suite, "measure", spy)
    result = runner.invoke(app, ["bench", *TINY, "--variants", "eager,sdpa,matmul", "--batch-sizes", "none"])
    assert result.exit_code == 0, result.output
    rows = {row["variant"]: row for row in last_json(result)["rows"]}
    assert rows["sdpa"]["status"] == "ok" and rows["sdpa"]["samples_per_s"] > 0
    assert rows["matmul"]["status"] == "skipped: eager already computes attention this way on CPU"
    assert kernels == [("eager", "auto"), ("sdpa", "sdpa")]


@pytest.mark.parametrize("args, message", [
    (["--variants", "eager,turbo"], "unknown variant 'turbo'; choose from: eager, tf32"),
    (["--batch-sizes", "0"], "--batch-sizes must be at least 1, got 0"),
    (["--batch-sizes", "64,lots"], "--batch-sizes takes integers like 1,2,4; got '64,lots'"),
    (["--iters", "0"], "Invalid value for '--iters': Input should be greater than or equal to 1"),
    (["--batch-size", "0"], "batch_size must be positive"),
    (["--peak-tflops", "-1"], "--peak-tflops must be positive"),
    (["--task", "divide"], "unknown task 'divide'"),
    (["--d-model", "30", "--n-heads", "4"], "must be divisible by n_heads"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = runner.invoke(app, ["bench", *TINY, *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_one_line_and_exit_2():
    result = runner.invoke(app, ["bench", "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "thinker: error: --device cuda asked for, but no CUDA device is available"


def test_scan_stops_at_out_of_memory_and_a_failing_compile_is_a_row(monkeypatch):
    real_measure = thinker.bench.suite.measure

    def measure(variant, cfg, device, **kwargs):
        if variant.compile:
            raise RuntimeError("inductor: no C++ compiler\nlong details")
        if cfg.batch_size >= 256:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_measure(variant, cfg, device, **kwargs)

    monkeypatch.setattr(thinker.bench.suite, "measure", measure)
    rows, scan = run_suite(tiny_config(), torch.device("cpu"), ["eager", "compile"], [128, 256, 512],
                           warmup=1, iters=2, peak_override=1.0)
    assert [(r["variant"], r["status"]) for r in rows] == [
        ("eager", "ok"), ("compile", "skipped: compile failed: RuntimeError: inductor: no C++ compiler"),
        ("batch=128", "ok"), ("batch=256", "oom")]
    assert scan == {"base": "eager", "batch_sizes": [128, 256, 512], "plateau_batch": None,
                    "stopped": "oom at batch=256"}
    assert rows[0]["peak_source"] == "--peak-tflops" and rows[0]["speedup"] == 1.0


def test_mfu_is_never_above_100_percent():
    rows, _ = run_suite(tiny_config(), torch.device("cpu"), ["eager"], [], warmup=1, iters=2, peak_override=1e-9)
    assert rows[0]["mfu"] is None and rows[0]["note"].startswith("MFU left out")


def test_cpu_peak_is_an_upper_bound_from_the_vector_extensions(monkeypatch):
    import thinker.bench.peaks as peaks

    monkeypatch.setattr(peaks, "cpu_vector_flags", lambda: ["avx2", "fma"])
    monkeypatch.setattr(peaks, "cpu_ghz", lambda: 2.0)
    tflops, source = peaks.cpu_peak("fp32", threads=2)
    assert tflops == pytest.approx(2 * 2.0 * 1.5 * 32 / 1e3) and "avx2" in source
    assert peaks.cpu_peak("bf16", threads=2)[0] == tflops  # emulated bf16 is no faster than fp32


def test_bf16_is_skipped_by_default_without_native_bf16(monkeypatch):
    import thinker.bench.variants as variants

    monkeypatch.setattr(variants, "native_bf16", lambda: False)
    rows, _ = run_suite(tiny_config(), torch.device("cpu"), ["bf16"], [], warmup=1, iters=2, peak_override=1.0)
    assert rows[0]["status"].startswith("skipped: no native bf16 on this CPU")
    rows, _ = run_suite(tiny_config(), torch.device("cpu"), ["bf16"], [], warmup=1, iters=2, peak_override=1.0,
                        explicit=True)
    assert rows[0]["status"] == "ok"


def test_plateau_marks_where_throughput_stops_growing():
    rows = [{"variant": f"batch={b}", "base": "eager", "status": "ok", "batch_size": b, "tokens_per_s": t,
             "note": None} for b, t in ((64, 100.0), (256, 300.0), (1024, 320.0), (4096, 330.0))]
    assert _plateau(rows) == 256
    assert rows[2]["note"] == "+7% tokens/s over batch=256: stopped growing" and rows[1]["note"] is None


def test_gpu_peak_table():
    assert gpu_peak("NVIDIA H100 80GB HBM3", "tf32") == (494.5, "table: H100 tf32")
    assert gpu_peak("NVIDIA H100 PCIe", "bf16") == (756.0, "table: H100 PCIe bf16")
    assert gpu_peak("NVIDIA A100-SXM4-80GB", "bf16") == (312.0, "table: A100 bf16")
    assert gpu_peak("Tesla T4", "fp32") == (8.1, "table: T4 fp32")
    assert gpu_peak("NVIDIA A10G", "fp32") is None  # unknown: probed instead
    assert peak_tflops(torch.device("cpu"), "fp32", override=2.5) == (2.5, "--peak-tflops")


class FakeNvml(types.ModuleType):
    """Just enough of pynvml for GpuMonitor, so its arithmetic is tested without a GPU."""

    NVML_GPM_METRICS_GET_VERSION, NVML_GPM_METRIC_SM_UTIL, NVML_GPM_METRIC_SM_OCCUPANCY = 1, 2, 3

    def __init__(self):
        super().__init__("pynvml")
        self.freed = 0

    def nvmlInit(self): pass
    def nvmlDeviceGetHandleByUUID(self, uuid): return "handle"
    def nvmlDeviceGetHandleByIndex(self, index): return "handle"
    def nvmlDeviceGetUtilizationRates(self, h): return types.SimpleNamespace(gpu=90)
    def nvmlDeviceGetMemoryInfo(self, h): return types.SimpleNamespace(used=2 * 2**30)
    def nvmlDeviceGetPowerUsage(self, h): raise RuntimeError("not supported")  # one query failing
    def nvmlGpmQueryDeviceSupport(self, h): return types.SimpleNamespace(isSupportedDevice=1)
    def nvmlGpmSampleAlloc(self): return object()
    def nvmlGpmSampleGet(self, h, sample): return sample
    def nvmlGpmSampleFree(self, sample): self.freed += 1

    def c_nvmlGpmMetricsGet_t(self):
        metric = lambda: types.SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0)  # noqa: E731
        return types.SimpleNamespace(metrics=[metric(), metric()])

    def nvmlGpmMetricsGet(self, request):
        for m in request.metrics:
            m.value = {self.NVML_GPM_METRIC_SM_UTIL: 41.0, self.NVML_GPM_METRIC_SM_OCCUPANCY: 12.5}[m.metricId]


def test_gpu_monitor_summarises_samples_with_a_fake_nvml(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = GpuMonitor(torch.device("cuda", 0), interval=0.01)
    sampler.start()
    summary = sampler.stop()
    assert summary == {"gpu_util": 90.0, "nvml_memory_mb": 2048.0, "power_w": None, "sm_activity": 41.0,
                       "sm_occupancy": 12.5}
    assert fake.freed == 2 and len(sampler.samples) >= 2


def test_gpu_monitor_without_pynvml_reads_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if nvidia-ml-py were missing
    sampler = GpuMonitor(torch.device("cuda", 0), interval=0.01)
    sampler.start()
    assert set(sampler.stop().values()) == {None}


def test_mlflow_logging_writes_one_run(tmp_path):
    from mlflow.tracking import MlflowClient

    rows = [{"variant": "batch=64", "status": "ok", "tokens_per_s": 10.0, "mfu": 0.1},
            {"variant": "tf32", "status": "skipped: tf32 needs CUDA", "tokens_per_s": None}]
    doc = {"task": "copy", "gpu": None, "device": "cpu", "torch": "x", "cpu": "some CPU", "cpu_threads": 1,
           "config": {"d_model": 32, "task_options": {"length": 4}}, "rows": rows}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = log_mlflow(doc, uri)
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "bench" and run.info.status == "FINISHED"
    assert run.data.metrics == {"batch_64/tokens_per_s": 10.0, "batch_64/mfu": 0.1}
    assert run.data.tags["status/tf32"] == "skipped: tf32 needs CUDA"
    assert run.data.params["task_options"] == '{"length": 4}' and run.data.params["cpu"] == "some CPU"
    assert [a.path for a in client.list_artifacts(run_id)] == ["bench.json"]


def test_bench_path_imports_neither_optuna_nor_mlflow():
    code = ("import sys, thinker.cli, thinker.cli.bench, thinker.bench.suite, thinker.bench.measure, "
            "thinker.bench.report, thinker.bench.nvml, thinker.bench.peaks, thinker.machine; "
            "assert 'optuna' not in sys.modules and 'mlflow' not in sys.modules, "
            "[m for m in sys.modules if m.startswith(('optuna', 'mlflow'))][:3]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nvml_sampling_on_a_gpu():
    pytest.importorskip("pynvml")
    sampler = GpuMonitor(torch.device("cuda"))
    a = torch.randn(4096, 4096, device="cuda")
    sampler.start()
    for _ in range(200):
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
    summary = sampler.stop()
    assert 0 <= summary["gpu_util"] <= 100
    assert summary["nvml_memory_mb"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_on_a_gpu_reports_memory_and_utilisation():
    args = [a if a != "cpu" else "cuda" for a in TINY]
    result = runner.invoke(app, ["bench", *args, "--variants", "eager,tf32,bf16,fused", "--batch-sizes", "none"])
    assert result.exit_code == 0, result.output
    doc = last_json(result)
    assert doc["device"] == "cuda" and doc["gpu"]
    for row in doc["rows"]:
        assert all(f in row for f in ROW_FIELDS + ("reserved_memory_mb", "nvml_memory_mb", "gpu_util",
                                                   "sm_activity", "power_w"))
        if row["status"] == "ok":
            assert row["peak_memory_mb"] > 0 and row["reserved_memory_mb"] >= row["peak_memory_mb"]
            assert row["data_ms"] + row["forward_ms"] + row["backward_ms"] == pytest.approx(row["step_ms"], rel=0.05)
            assert row["mfu"] is None or 0 < row["mfu"] <= 1


def test_a_run_that_fails_to_log_is_ended_failed_not_left_running(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from thinker.sweeps.tracking import TrackingError, log_run

    def refuse(*args, **kwargs):
        raise MlflowException("artifact store is read-only")

    monkeypatch.setattr(MlflowClient, "log_dict", refuse)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(TrackingError, match="artifact store is read-only"):
        log_run(uri, "eval", "x", {"a": 1}, {"m": 1.0}, {}, {"doc": 1}, "doc.json")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("eval").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_sweep_bench_runs_the_code_of_the_checkout_it_is_given():
    """`--against REF` must time REF's code, not the installed thinker's: its sweeps and bench too."""
    from thinker.bench.checkouts import ROOT, run_from, worktree

    with worktree("HEAD") as checkout:
        probe = "import thinker, thinker.sweeps, thinker.bench; print(thinker.__file__, thinker.sweeps.__file__, " \
                "thinker.bench.__file__)"
        out = subprocess.run([sys.executable, "-S", "-c", probe], env=run_from(checkout), cwd=checkout.parent,
                             capture_output=True, text=True, check=True).stdout.split()
        assert len(out) == 3 and all(path.startswith(str(checkout)) for path in out), out
    assert not checkout.exists()
    assert str(ROOT) not in " ".join(out)


def test_sweep_bench_stopped_by_sigterm_stops_its_sweep_and_removes_its_worktree():
    root = Path(__file__).resolve().parent.parent

    def worktrees() -> list[str]:
        listing = subprocess.run(["git", "-C", str(root), "worktree", "list", "--porcelain"],
                                 capture_output=True, text=True, check=True).stdout
        return [line.split(" ", 1)[1] for line in listing.splitlines() if "thinker-ref-" in line]

    before = worktrees()
    proc = subprocess.Popen([sys.executable, "-m", "thinker.bench.sweep", "--parts", "default", "--trials", "50",
                             "--device", "cpu", "--against", "HEAD"], cwd=root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not set(worktrees()) - set(before) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    created = set(worktrees()) - set(before)
    time.sleep(3)  # the sweep under way in the worktree
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert created and proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "bench: interrupted" and "Traceback" not in stderr
    assert not set(worktrees()) & created and not any(Path(p).exists() for p in created)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine would run the whole script")
def test_gpu_script_without_a_gpu_is_one_line_and_exit_2(tmp_path):
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench/gpu.sh: nvidia-smi failed: no GPU here?"


BLOCKED_SWEEP_STACK = """
import sys
import pytest

class Block:  # as on a GPU box with torch but neither Optuna nor MLflow
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("optuna", "mlflow"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, Block())
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_gpu_tests_are_collected_without_optuna_or_mlflow(tmp_path):
    """bench/gpu.sh runs `pytest -m gpu` where the sweep stack may be missing: its modules are left out, the
    GPU tests still collected (before, five collection errors stopped the run with none of them)."""
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "blocked.py").write_text(BLOCKED_SWEEP_STACK)
    proc = subprocess.run([sys.executable, str(tmp_path / "blocked.py"), "-m", "gpu", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    counts = dict(line.rsplit(": ", 1) for line in proc.stdout.splitlines() if line.startswith("tests/"))
    assert int(counts["tests/test_train.py"]) >= 4 and int(counts["tests/test_bench.py"]) >= 2, proc.stdout
    assert not any("sweep" in name or "scale" in name for name in counts), counts


def fake_gpu_machine(tmp_path: Path) -> dict:
    """PATH with an nvidia-smi that answers, and a PYTHON that only writes down what it was asked to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H200'\n")
    (bin_dir / "python").write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path / 'ran.txt'}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(bin_dir / "python")}


@pytest.mark.skipif(shutil.which("bash") is None, reason="the script is bash")
def test_gpu_script_runs_the_parts_asked_for_in_order_then_the_targets(tmp_path):
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu.sh"
    env = fake_gpu_machine(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(script), str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert [line.split()[:2] for line in ran] == [["-m", "pytest"], ["-m", "thinker"], ["-m", "thinker"],
                                                  ["-c", "import"], ["-m", "thinker.bench.sweep"],
                                                  ["-m", "thinker.bench.targets"]]
    assert "--device cuda --variants eager,tf32,bf16,fused,graph,matmul --json" in ran[1]  # no cold compile build
    assert "--variants eager,matmul --batch-size 4096 --batch-sizes none --profile" in ran[2]
    assert f"--json {out}/profile-4096/bench.json" in ran[2]
    # the sweep is time-boxed by default: what is left of the 540 s budget, less 30 s for the table
    deadline = int(ran[4].split("--deadline ")[1])
    assert "--device auto" in ran[4] and 480 <= deadline <= 510
    assert f"--timeout {deadline * 3 // 4} " in ran[4]
    assert ran[5] == f"-m thinker.bench.targets {out}"
    assert (out / "nvidia-smi.txt").read_text() == "NVIDIA H200\n"

    (tmp_path / "ran.txt").unlink()
    proc = subprocess.run(["bash", str(script), str(out), "sweep,tests"], capture_output=True, text=True,
                          env={**env, "SWEEP_TIMEOUT": "240", "SWEEP_DEADLINE": "330"})
    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert proc.returncode == 0 and [line.split()[1] for line in ran] == ["pytest", "import", "thinker.bench.sweep",
                                                                         "thinker.bench.targets"]
    assert ran[2].endswith(f"--json {out}/sweep-default-cuda.json --timeout 240 --deadline 330")

    (tmp_path / "ran.txt").unlink()
    proc = subprocess.run(["bash", str(script), str(out), "sweep"], capture_output=True, text=True,
                          env={**env, "BUDGET": "60"})
    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert "30s left of BUDGET=60: no sweep" in proc.stdout and "thinker.bench.sweep" not in " ".join(ran)

    for variables, message in (({}, "unknown part 'turbo'"), ({"DEVICE": "tpu"}, "DEVICE must be cuda or cpu"),
                               ({"BUDGET": "9m"}, "BUDGET must be a whole number of seconds")):
        args = ["bash", str(script), str(out), "tests,turbo" if not variables else "tests"]
        proc = subprocess.run(args, capture_output=True, text=True, env={**env, **variables})
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="the script is bash")
def test_gpu_script_installs_carried_wheels_first_and_takes_relative_paths(tmp_path):
    """On a machine with no package index: WHEELS=DIR installs them before the parts; OUT and DIR may be
    relative to where it is started, though the parts run from the checkout's root."""
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu.sh"
    env = fake_gpu_machine(tmp_path)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "optuna-5.0.0-py3-none-any.whl").write_text("")
    proc = subprocess.run(["bash", str(script), "out", "tests"], capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "WHEELS": "wheels"})
    assert proc.returncode == 0, proc.stderr
    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert ran[0].startswith("-m pip install -q --no-index --no-deps") and ran[1].startswith("-m pytest -m gpu")
    assert ran[2].startswith("-m thinker.bench.targets")
    assert ran[0].endswith(f"{tmp_path}/wheels/optuna-5.0.0-py3-none-any.whl")
    assert (tmp_path / "out" / "nvidia-smi.txt").is_file() and (tmp_path / "out" / "gpu-tests.txt").is_file()

    proc = subprocess.run(["bash", str(script), "out", "tests"], capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "WHEELS": "nowhere"})
    assert proc.returncode == 2 and proc.stderr.strip() == "bench/gpu.sh: WHEELS: no folder nowhere"


@pytest.mark.parametrize("script, args, message", [
    ("sweep", ["--timeout", "0"], "argument --timeout: must be a positive number of seconds, got '0'"),
    ("sweep", ["--deadline", "nan"], "argument --deadline: must be a positive number of seconds, got 'nan'"),
    ("sweep", ["--against", "no-such-commit"], "cannot check out 'no-such-commit'"),
    ("sweep", ["--device", "gpu"], "argument --device: unknown device 'gpu'"),
    ("sweep", ["--parts", "default,fast"], "unknown part(s): fast"),
    ("sweep", ["--trials", "many"], "argument --trials: must be a whole number above 0, got 'many'"),
    ("sweep", ["--task", "divide"], "unknown task 'divide'"),
    ("learning", ["--device", "foo"], "argument --device: unknown device 'foo'"),
    ("learning", ["--jobs", "0"], "argument --jobs: must be a whole number above 0, got '0'"),
    ("learning", ["--threads", "-1"], "argument --threads: must be a whole number, got '-1'"),
    ("thinking", ["--max-samples", "-5"], "argument --max-samples: must be a whole number above 0, got '-5'"),
    ("thinking", ["--from-json", "EMPTY"], "--from-json: not a report of this benchmark (KeyError: 'rows')"),
    ("thinking", ["--from-json", "LIST"], "--from-json: not a report of this benchmark (TypeError"),
])
def test_benchmark_bad_input_is_one_line_and_exit_2(script, args, message, tmp_path, monkeypatch, capsys):
    import importlib  # noqa: PLC0415

    module = importlib.import_module(f"thinker.bench.{script}")
    if "--against" not in args:  # that one is found where the default part checks the commit out
        monkeypatch.setattr(module, "run_many" if script != "sweep" else "default_part",
                            lambda *a, **k: pytest.fail("started the work"))
    monkeypatch.chdir(tmp_path)  # a picture a bad run might still draw lands here
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "list.json").write_text("[]")
    files = {"EMPTY": "empty.json", "LIST": "list.json"}
    with pytest.raises(SystemExit) as stop:
        (module.run if script == "sweep" else module.main)(["--parts", "default"] * (script == "sweep") +
                                                           [files.get(a, a) for a in args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"bench: error: {message}"), err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("script, args", [
    ("sweep", ["--parts", "default", "--json"]), ("learning", ["--tasks", "copy", "--json"]),
    ("thinking", ["--tasks", "roll", "--json"]), ("thinking", ["--tasks", "roll", "--plot"]),
])
def test_benchmarks_refuse_an_unwritable_output_before_the_work(script, args, tmp_path, monkeypatch, capsys):
    """An hour of training must not end in "permission denied": the path is tried first, and the run trains nothing."""
    import importlib  # noqa: PLC0415

    module = importlib.import_module(f"thinker.bench.{script}")
    monkeypatch.setattr(module, "run_many" if script != "sweep" else "default_part",
                        lambda *a, **k: pytest.fail("trained before checking its output"))
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit) as stop:
        (module.run if script == "sweep" else module.main)([*args, str(tmp_path / "taken" / "out.json")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("bench: error: output directory ") and not (tmp_path / "taken").is_dir()


def test_sweep_bench_draws_the_study_before_its_directory_goes(tmp_path):
    from thinker.bench.runs import sweep  # noqa: PLC0415 - imports Optuna's side of the bench

    space = Path(__file__).resolve().parent / "fixtures" / "tiny_copy.toml"
    summary = sweep(["copy", "--space", str(space), "--trials", "2", "--device", "cpu", "--jobs", "1"],
                    plot=tmp_path / "study.png")
    assert summary["finished"] == 2
    assert (tmp_path / "study.png").read_bytes().startswith(b"\x89PNG")


def test_a_study_picture_that_fails_keeps_the_sweeps_figures(tmp_path, monkeypatch):
    """On a GPU lent for minutes, a plot that fails after the sweep must not lose the sweep's figures."""
    import thinker.sweeps.plots  # noqa: PLC0415
    from thinker.bench.runs import sweep  # noqa: PLC0415

    def broken(*args, **kwargs):
        raise ValueError("no font for this glyph")

    monkeypatch.setattr(thinker.sweeps.plots, "save", broken)
    space = Path(__file__).resolve().parent / "fixtures" / "tiny_copy.toml"
    summary = sweep(["copy", "--space", str(space), "--trials", "1", "--device", "cpu", "--jobs", "1"],
                    plot=tmp_path / "study.png")
    assert summary["finished"] == 1 and summary["wall_seconds"] > 0
    assert summary["plot_error"] == "ValueError: no font for this glyph" and not (tmp_path / "study.png").exists()


def test_a_sweep_past_its_deadline_is_stopped_and_still_reported(tmp_path):
    """On a machine lent for minutes, a cut sweep's figures beat none: stopped as Ctrl-C stops it, summary kept."""
    from thinker.bench.runs import sweep  # noqa: PLC0415

    slow = tmp_path / "slow.toml"
    space = Path(__file__).resolve().parent / "fixtures" / "tiny_copy.toml"
    slow.write_text(space.read_text().replace("target = 1.0", "target = 2.0").replace("6144", "400000"))
    started = time.monotonic()
    summary = sweep(["copy", "--space", str(slow), "--trials", "50", "--device", "cpu", "--jobs", "1",
                     "--pruner", "none"], deadline=12)
    assert summary["status"] == "interrupted" and summary["stopped_at_deadline"] is True
    assert 12 <= summary["wall_seconds"] < 12 + 60 and time.monotonic() - started < 12 + 60
    assert summary["finished"] < 50 and summary["parent_run_id"] and summary["failed"] == summary["interrupted"]


def test_the_commit_is_unknown_rather_than_a_crash_without_git(tmp_path, monkeypatch):
    """A GPU box may have the files but neither git nor the history: the sweep bench still runs."""
    from thinker.bench.checkouts import commit_of  # noqa: PLC0415

    assert commit_of(tmp_path) is None  # a folder that is no checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to be found
    assert commit_of(Path(__file__).resolve().parent.parent) is None


def test_a_sweep_that_fails_says_its_own_last_line(tmp_path):
    """The sweep under measurement failing is not the bench crashing: its own error line (main: exit code 1)."""
    from thinker.bench.runs import SweepFailed, sweep  # noqa: PLC0415

    with pytest.raises(SweepFailed, match=r"failed: thinker: error: .*no-such-space.toml"):
        sweep(["copy", "--space", str(tmp_path / "no-such-space.toml"), "--trials", "1"])


def write_gpu_run(out: Path, graph_ms: float = 1.9, sweep_cut: bool = False) -> None:
    """The JSON files of a bench/gpu.sh run, with made-up figures, in the shapes the parts write."""
    def row(variant, batch, ms, tokens, **more):
        return {"variant": variant, "batch_size": batch, "status": "ok", "wall_step_ms": ms, "tokens_per_s": tokens,
                "forward_ms": 1.0, "backward_ms": 2.5, "base": None, **more}

    (out / "profile-4096").mkdir(parents=True)
    (out / "gpu-tests.txt").write_text("....\n9 passed, 391 deselected in 80.2s\n")
    rows = [row("eager", 64, 9.0, 5e5), row("graph", 64, graph_ms, 2e6, launches_per_step=3.0),
            {"variant": "tf32", "batch_size": 64, "status": "skipped: failed: boom"},
            row("batch=16384", 16384, 30.0, 4.2e6, base="graph")]
    (out / "bench-cuda.json").write_text(json.dumps({"machine": "NVIDIA H100 80GB HBM3", "device": "cuda",
                                                     "rows": rows}))
    profile = [row("eager", 4096, 20.0, 1e6, forward_ms=5.0, backward_ms=16.0),
               row("matmul", 4096, 20.0, 1e6, forward_ms=5.0, backward_ms=14.0)]
    (out / "profile-4096" / "bench.json").write_text(json.dumps({"device": "cuda", "rows": profile}))
    this = {"wall_seconds": 280.0, "finished": 20 if sweep_cut else 50, "stopped_at_deadline": sweep_cut,
            "trials_per_hour": 640.0, "best_exact_match": 0.9995, "usage": {"gpu_util": 97.0, "sm_activity": 71.5}}
    (out / "sweep-default-cuda.json").write_text(json.dumps({"trials": 50, "default": {"this": this}}))


def collect_json(out: Path) -> str:
    from thinker.bench.targets import collect

    return json.dumps(collect(out))


def test_gpu_targets_table_says_met_missed_or_why_not_measured(tmp_path, capsys):
    from thinker.bench.targets import main

    write_gpu_run(tmp_path)
    assert main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert text.splitlines()[0] == "GPU targets on NVIDIA H100 80GB HBM3"
    assert "9 passed" in lines["GPU tests (pytest -m gpu) pass"] and " met " in lines["GPU tests (pytest -m gpu) pass"]
    step = lines["batch-64 addition step, sampling included <= 2.5 ms"]
    assert "1.90 ms (graph)" in step and " met " in step and "eager 9.00 ms; 3 launches/step" in step
    tokens = lines["tokens/s at the best batch size >= 5x 793k = 3.96M"]
    assert "4.20M (graph, batch 16384)" in tokens and " met " in tokens
    assert "2.80 (matmul)" in lines["backward / forward at batch 4096 <= 3"]
    assert "72% (sm_activity)" in lines["SM utilisation while trials run >= 80%"] and "missed" in text
    assert json.loads((tmp_path / "targets.json").read_text())["rows"][4]["verdict"] == "met"  # 4.7 min
    assert (tmp_path / "targets.txt").read_text() == text

    cut = tmp_path / "cut"
    write_gpu_run(cut, graph_ms=3.1, sweep_cut=True)
    (cut / "profile-4096" / "bench.json").unlink()
    assert main([str(cut), "--require-files"]) == 1  # the traces, the sweep's text and picture are missing
    out, err = capsys.readouterr()
    assert "not reached" in out and "cut at the time box: 20 of 50 trials finished" in out
    assert "no bench.json: its part did not run or failed" in out
    for last, verdict in (("Interrupted: 1 error during collection", "missed"), ("2 failed, 7 passed in 9s", "missed"),
                          ("9 skipped, 391 deselected in 30.1s", "not measured")):
        (cut / "gpu-tests.txt").write_text(f"E   ModuleNotFoundError\n{'=' * 9} {last} {'=' * 9}\n")
        assert json.loads(collect_json(cut))["rows"][0]["verdict"] == verdict, last
    assert "targets: profile-4096/trace-eager.json: not written" in err
    assert main([str(tmp_path / "nowhere")]) == 2


def test_gpu_image_check_names_what_neither_the_image_nor_the_wheels_hold():
    from thinker.bench.gpu_image import check, project_requirements

    def item(name, version, *requires):
        return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)}}

    installs = [item("mlflow", "3.17.2", "sqlparse<1", "pytest; extra == 'dev'"), item("sqlparse", "0.6.1"),
                item("numpy", "2.5.2"), item("optuna", "5.0.1")]
    image, wheels = {"numpy": "2.5.2"}, {"mlflow": "3.17.2", "optuna": "5.0.0"}
    assert check(image, wheels, installs) == [
        "sqlparse==0.6.1 (needed by mlflow): neither in the image nor in gpu-wheels.txt",
        "optuna: gpu-wheels.txt pins 5.0.0, the resolution needs 5.0.1"]
    wanted = project_requirements()
    assert not any(r.startswith(("torch", "ruff", "psycopg")) for r in wanted)  # not taken from the index there
    assert any(r.startswith("pytest") for r in wanted) and any(r.startswith("nvidia-ml-py") for r in wanted)
