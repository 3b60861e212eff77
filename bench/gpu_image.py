"""Does the GPU machine have everything the project imports there? pip's resolver answers, not a reading.

    python3 bench/gpu_image.py               # resolve for the image's Python; exit 1 naming what is missing
    python3 bench/gpu_image.py --from-image FILE  # and write the image's packages the project needs to FILE

The GPU machines reach no package index. What they run is their image's packages (gpu-image.txt, as
documented, with the versions that were read) plus the wheels carried there (gpu-wheels.txt). This
asks pip to resolve, for the image's Python on x86-64 Linux, the carried wheels together with the
project's own requirements (pyproject.toml: the dependencies, the `gpu` extra and the test tools the
device run uses), the image's known versions as constraints; then every package in the resolution
must be a carried wheel or an image package. Needs pip and the package index (the resolution reads
metadata only); standard library otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014", "manylinux1")
# What the device run does not take from pyproject.toml: torch is the image's own CUDA build (asking
# for it would resolve PyPI's), the linter is not run there, and PostgreSQL is not tested there.
NOT_ON_DEVICE = {"torch", "ruff", "psycopg"}
TEST_TOOLS = {"pytest", "pyyaml"}  # the test extra's tools the device run's `pytest -m gpu` uses


def normal(name: str) -> str:
    """A distribution name as pip compares them (PEP 503).

    >>> normal("PyYAML"), normal("typing_extensions"), normal("Flask-Cors")
    ('pyyaml', 'typing-extensions', 'flask-cors')
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    """>>> requirement_name("psycopg[binary]>=3.1"), requirement_name("nvidia-ml-py>=12")
    ('psycopg', 'nvidia-ml-py')
    """
    return normal(re.split(r"[\s\[<>=!~;]", line.strip(), maxsplit=1)[0])


def read_list(path: Path) -> dict[str, str | None]:
    """name -> pinned version (or None) from a requirements-style list; comments and blank lines skipped."""
    found: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[normal(name)] = version.strip() or None
    return found


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What the project asks for on the device: its dependencies, the gpu extra and the test tools."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = list(project["dependencies"]) + list(extras.get("gpu", []))
    wanted += [r for r in extras.get("test", []) if requirement_name(r) in TEST_TOOLS]
    return [r for r in wanted if requirement_name(r) not in NOT_ON_DEVICE]


def resolve(requirements: list[str], constraints: list[str], python: str) -> list[dict]:
    """pip's resolution (its --report 'install' entries) for `python` on x86-64 Linux, binary wheels only."""
    with tempfile.TemporaryDirectory() as tmp:
        report, pins = Path(tmp) / "report.json", Path(tmp) / "constraints.txt"
        pins.write_text("\n".join(constraints) + "\n")
        platforms = [arg for tag in PLATFORMS for arg in ("--platform", f"{tag}_x86_64")]
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report), "--target", str(Path(tmp) / "target"),
               "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", *platforms, "-c", str(pins), *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or proc.stderr.splitlines()
            raise SystemExit(f"gpu_image: pip could not resolve the device's packages: {' '.join(errors[-3:])}")
        return json.loads(report.read_text())["install"]


def needed_by(installs: list[dict]) -> dict[str, list[str]]:
    """name -> the resolved packages that require it (for saying why a missing one is needed)."""
    users: dict[str, list[str]] = {}
    for item in installs:
        meta = item["metadata"]
        for dep in meta.get("requires_dist") or []:
            if "extra ==" not in dep:
                users.setdefault(requirement_name(dep), []).append(meta["name"])
    return users


def check(image: dict[str, str | None], wheels: dict[str, str | None], installs: list[dict]) -> list[str]:
    """One line per package of the resolution that neither the image nor the carried wheels hold."""
    users = needed_by(installs)
    problems = []
    for item in installs:
        name, version = normal(item["metadata"]["name"]), item["metadata"]["version"]
        if name in wheels:
            if wheels[name] != version:
                problems.append(f"{name}: gpu-wheels.txt pins {wheels[name]}, the resolution needs {version}")
        elif name not in image:
            why = ", ".join(sorted(set(users.get(name, [])))) or "the project"
            problems.append(f"{name}=={version} (needed by {why}): neither in the image nor in gpu-wheels.txt")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-image", metavar="FILE",
                        help="also write the image's packages the project needs here, one a line (for a rehearsal)")
    parser.add_argument("--python", default=IMAGE_PYTHON, help=f"the image's Python [{IMAGE_PYTHON}]")
    args = parser.parse_args(argv)
    image, wheels = read_list(HERE / "gpu-image.txt"), read_list(HERE / "gpu-wheels.txt")
    constraints = [f"{name}=={version}" for name, version in image.items() if version]
    requirements = [f"{name}=={version}" for name, version in wheels.items()] + project_requirements()
    installs = resolve(requirements, constraints, args.python)
    names = [normal(item["metadata"]["name"]) for item in installs]
    from_image = sorted(n for n in names if n in image and n not in wheels)
    if args.from_image:
        Path(args.from_image).write_text("".join(f"{name}\n" for name in from_image))
    problems = check(image, wheels, installs)
    for line in problems:
        print(f"gpu_image: {line}", file=sys.stderr)
    carried = sum(n in wheels for n in names)
    print(f"gpu_image: {len(names)} packages resolved for Python {args.python}: {carried} carried as wheels, "
          f"{len(from_image)} from the image, {len(problems)} missing")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
