"""Every docstring example in the package runs: `pytest tests/test_doctests.py`.

`thinker.sweeps` and `thinker.bench` (the sweeps/ and bench/ folders) are walked as part of `thinker`.
"""

import doctest
import importlib
import pkgutil

import pytest

import thinker
import thinker.bench
import thinker.sweeps

MODULES = sorted(m.name for package in (thinker, thinker.sweeps, thinker.bench)
                 for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
                 if m.name.split(".")[-1] != "__main__")


def test_the_walk_finds_every_layer():
    assert {"thinker.model", "thinker.training.loop", "thinker.sweeps.space", "thinker.bench.suite",
            "thinker.cli.train"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes (optuna.db, say) writes here
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
