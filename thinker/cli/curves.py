"""A training run's learning curves as a picture: `curves.png` beside model.pt (`thinker train --out`).

Held-out exact match and token accuracy (and length-generalisation exact match when it moved off zero)
against samples trained, on the left axis; held-out loss on a log scale on the right; the target as a
dotted line, the saved (best) evaluation as a vertical one, and every exhaustive check as a mark on
the exact-match curve: a green triangle where every problem was right, a red cross where one was wrong.
"""

from __future__ import annotations

from pathlib import Path

from thinker.plotting import pyplot


def draw_curves(path: Path, result, target: float) -> None:
    """Write the picture of `result` (a `TrainResult`) to `path`."""
    plt = pyplot()

    history = result.history
    samples = [h["samples"] for h in history]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(samples, [h["exact_match"] for h in history], color="tab:blue", lw=2, label="exact match")
    ax.plot(samples, [h["token_accuracy"] for h in history], color="tab:cyan", ls="--", label="token accuracy")
    if any(h.get("length_exact_match") for h in history):
        ax.plot(samples, [h["length_exact_match"] for h in history], color="tab:purple", ls=":",
                label="exact match, longer problems")
    for passed, marker, color in ((1.0, "v", "tab:green"), (0.0, "X", "tab:red")):
        checks = [h for h in history if h.get("exhaustive") == passed]
        if checks:
            ax.scatter([h["samples"] for h in checks], [h["exact_match"] for h in checks], marker=marker, s=60,
                       color=color, zorder=4,
                       label=f"exhaustive check {'passed' if passed else 'failed'} ({len(checks)})")
    if target <= 1:
        ax.axhline(target, color="0.5", ls=":", lw=1)
    ax.axvline(result.best_samples, color="tab:orange", lw=1, label=f"saved: {result.best_samples:,} samples")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("samples trained")
    ax.set_ylabel("held-out")
    handles, labels = ax.get_legend_handles_labels()
    losses = [(s, h["loss"]) for s, h in zip(samples, history) if h["loss"] > 0]
    if losses:  # a loss of exactly 0 has no place on a log scale
        right = ax.twinx()
        handles += right.plot([s for s, _ in losses], [v for _, v in losses], color="0.55", lw=1)
        labels.append("loss (right)")
        right.set_yscale("log")
        right.set_ylabel("held-out loss")
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title(f"{result.task}: {result.exact_match:.2%} held-out exact match, {result.samples:,} samples in "
                 f"{result.train_seconds:.0f} s (stopped: {result.stop_reason})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
