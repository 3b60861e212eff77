"""thinker: a looped transformer that thinks through latent memory, with sweeps and benchmarks.

The folders `sweeps/` and `bench/` sit beside `thinker/` in the source tree and install as the
subpackages `thinker.sweeps` and `thinker.bench` (ARCHITECTURE.md says why). Run from a source
checkout (`PYTHONPATH=. python -m thinker ...`), the finder below gives those two names the two
folders, so the same imports work installed or not.
"""

import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path

__version__ = "0.1.0"

_CHECKOUT = _Path(__file__).resolve().parent.parent


class _BesideFinder:
    """Finds `thinker.sweeps` and `thinker.bench` in the checkout's sweeps/ and bench/ folders."""

    NAMES = ("thinker.sweeps", "thinker.bench")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in cls.NAMES:
            return None
        folder = _CHECKOUT / name.rpartition(".")[2]
        if not (folder / "__init__.py").is_file():
            return None
        return _util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])


if not (_Path(__file__).parent / "sweeps").is_dir() and _BesideFinder not in _sys.meta_path:
    _sys.meta_path.append(_BesideFinder)
