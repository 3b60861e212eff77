"""Does thinking longer solve longer problems? Exact match over problem length x thinking steps.

    >>> from thinker.model import Thinker, ThinkerConfig
    >>> from thinker.tasks import make_task
    >>> task = make_task("copy", alphabet=2, length=4)
    >>> model = Thinker(ThinkerConfig(vocab_size=task.vocab_size, max_len=12, d_model=16))
    >>> [(r["length"], r["steps"]) for r in length_grid(model, task, [4, 8], [1, "auto"], size=8)]
    [(4, 1), (4, 2), (8, 1), (8, 4)]

Every cell is `thinker.exam.score_length`: the same random problems of one length (symbols of a
sequence, digits of every operand) for every model and step count. A step count is a number, None
(as trained) or "auto" (the trained steps times length / training length, `thinker.exam.auto_steps`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from thinker.exam import auto_steps, score_length
from thinker.model import Thinker
from thinker.plotting import pyplot
from thinker.tasks import Task

Steps = int | str | None  # a number, None (as trained) or "auto"


def length_grid(model: Thinker, task: Task, lengths: list[int], steps: list[Steps], size: int = 2048,
                workers: int = 1, on_cell: Callable[[dict], None] | None = None) -> list[dict]:
    """One row per length and step count: {length, steps, asked, exact_match, token_accuracy, problems,
    seconds}; `asked` is the step count as given ("auto", None or the number)."""
    rows = []
    for length in lengths:
        for asked in steps:
            start = time.perf_counter()
            scores = score_length(model, task, length, asked, size=size, workers=workers)
            count = auto_steps(model, task, length) if asked == "auto" else asked or model.cfg.steps
            rows.append({"length": length, "steps": count, "asked": asked, **scores.figures(),
                         "seconds": round(time.perf_counter() - start, 2)})
            if on_cell is not None:
                on_cell(rows[-1])
    return rows


def draw_length_grid(path: Path, rows: list[dict], title: str, trained: tuple[int, int] | None = None) -> None:
    """A heat map of exact match, lengths down and step counts across (the numbers written in the cells);
    `trained` (length, steps) is outlined."""
    plt = pyplot()
    lengths = sorted({r["length"] for r in rows})
    steps = sorted({r["steps"] for r in rows})
    cell = {(r["length"], r["steps"]): r["exact_match"] for r in rows}
    grid = [[cell.get((length, k), float("nan")) for k in steps] for length in lengths]
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(steps), 1.2 + 0.5 * len(lengths)))
    ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.0%}" if value < 0.995 or value == 1 else ">99%", ha="center", va="center",
                        color="black" if value > 0.6 else "white", fontsize=8)
    if trained is not None and trained[0] in lengths and trained[1] in steps:
        i, j = lengths.index(trained[0]), steps.index(trained[1])
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(steps)), [str(k) for k in steps])
    ax.set_yticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_xlabel("thinking steps")
    ax.set_ylabel("length")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
