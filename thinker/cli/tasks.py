"""`thinker tasks`: the task registry with one-line descriptions and default options.

    thinker tasks
"""

import inspect

from rich.console import Console
from rich.table import Table

from thinker.tasks import TASKS


def defaults(cls) -> str:
    params = inspect.signature(cls.__init__).parameters.values()
    return ", ".join(f"{p.name}={p.default}" for p in params
                     if p.default is not inspect.Parameter.empty and p.default is not None)


def tasks_command() -> None:
    """List the tasks with one-line descriptions and their options (-o KEY=VALUE)."""
    table = Table("task", "description", "options (-o KEY=VALUE)", box=None)
    for name, cls in TASKS.items():
        table.add_row(name, cls.description, defaults(cls))
    Console().print(table)
