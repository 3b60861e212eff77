"""The one place pynvml (the nvidia-ml-py package) is imported: NVML, initialised once, or why not.

    >>> nvml, error = load()  # (module, None) on a GPU machine with the package; (None, reason) elsewhere

Everything else that reads NVML (the bench's GPU monitor, the machine record) goes through here,
so the rest of the project runs without the package or a driver.
"""

from __future__ import annotations


def load():
    """(pynvml, None) once NVML is initialised (nvmlInit counts its callers), or (None, a one-line reason)."""
    try:
        import pynvml  # noqa: PLC0415 - optional dependency, imported here only

        pynvml.nvmlInit()
        return pynvml, None
    except Exception as e:  # no package, no driver, a container without NVML
        return None, f"NVML unavailable ({type(e).__name__}: {e})"


def driver_version() -> str | None:
    nvml, _ = load()
    if nvml is None:
        return None
    try:
        version = nvml.nvmlSystemGetDriverVersion()
    except Exception:
        return None
    return version.decode() if isinstance(version, bytes) else version
