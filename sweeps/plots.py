"""A study's pictures: at a glance, as one PNG (every trial's learning curve, the value trial by trial, what
mattered), and Optuna's own plots as HTML; every sweep puts them all on its parent run, under plots/.

    thinker report addition --plot study.png

Left, held-out exact match against samples trained, one line per trial, from the evaluations Optuna
recorded (the best exact match so far: what the pruner compared); pruned trials grey and ending in an x
where they were stopped (the others in a dot), failed ones red, the best trial drawn thick. Middle, the
study's objective trial by trial (exact match on a logit scale, where 0.999 and 1 stay apart) with the
best so far as a step line, pruned and failed trials as ticks along the bottom (they have no value); for
a two-objective study, exact match against cost with the Pareto front joined up. Right, the parameter
importances when there are enough complete trials to tell.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna import visualization

from thinker.plotting import pyplot
from thinker.sweeps.report import importances
from thinker.sweeps.settings import EXACT_MATCH
from thinker.sweeps.trial import TrialRecord

LOGIT_EDGE = 1e-4  # exact match 0 and 1 are drawn at 0.0001 and 0.9999 on the logit scale
VALUE_LABEL = {"accuracy": "best held-out exact match (1 drawn at 0.9999)",
               "length": "exact match on longer problems",
               "time-to-target": "samples to the target (missed: budget x (2 - exact match))"}
COST_LABEL = {"pareto-samples": "samples trained", "pareto-seconds": "training seconds"}
STATE_COLOR = {"COMPLETE": "tab:blue", "PRUNED": "0.6", "FAIL": "tab:red", "RUNNING": "tab:green"}


@dataclass(frozen=True)
class Curve:
    """One trial's evaluations: samples trained and the best held-out exact match by then."""

    trial: int
    state: str
    samples: tuple[int, ...]
    exact_match: tuple[float, ...]


def curves(study: optuna.Study) -> list[Curve]:
    """The learning curve of every trial that reported an evaluation, in trial order.

    Optuna holds what the pruner compared: exact match for `accuracy`, one minus it for the other
    single-objective studies, and for a trial that stopped at its target the same value repeated up to
    its budget (so later trials are compared with it); the curve ends where training ended.
    """
    flipped = study.user_attrs.get("objective", "accuracy") not in EXACT_MATCH
    found = []
    for t in study.get_trials(deepcopy=False):
        trained = TrialRecord.from_trial(t).samples
        points = sorted((s, v) for s, v in t.intermediate_values.items() if trained is None or s <= trained)
        if points:
            found.append(Curve(t.number, t.state.name, tuple(s for s, _ in points),
                               tuple(1.0 - v if flipped else v for _, v in points)))
    return found


def best_number(study: optuna.Study) -> int | None:
    if len(study.directions) > 1:
        return None
    try:
        return study.best_trial.number
    except ValueError:  # no complete trial
        return None


def draw_curves(ax, study: optuna.Study) -> None:
    best = best_number(study)
    found = curves(study)
    for c in sorted(found, key=lambda c: (c.trial == best, c.state == "COMPLETE")):  # the best on top
        color = "tab:orange" if c.trial == best else STATE_COLOR.get(c.state, "0.4")
        ax.plot(c.samples, c.exact_match, color=color, lw=2.5 if c.trial == best else 1,
                alpha=1 if c.trial == best else 0.7, label=f"best: #{best}" if c.trial == best else None)
        end = "x" if c.state in ("PRUNED", "FAIL") else "o"  # also shows a trial evaluated once
        ax.plot(c.samples[-1:], c.exact_match[-1:], end, color=color, ms=5 if end == "x" else 3)
    ax.set_xlabel("samples trained")
    ax.set_ylabel("held-out exact match (best so far)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"learning curves: {len(found)} trials (grey: pruned, red: failed)", fontsize=10)
    if any(c.trial == best for c in found):
        ax.legend(loc="lower right", fontsize=8)
    if not found:
        ax.text(0.5, 0.5, "no evaluations recorded\n(two-objective studies are not pruned)",
                ha="center", va="center", transform=ax.transAxes, fontsize=9)


def draw_values(ax, study: optuna.Study) -> None:
    objective = study.user_attrs.get("objective", "accuracy")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        ax.scatter([t.values[1] for t in complete], [t.values[0] for t in complete], color="tab:blue", s=14,
                   label="trial")
        edge = sorted((t.values[1], t.values[0]) for t in complete if t.number in front)
        ax.plot([c for c, _ in edge], [e for _, e in edge], "o-", color="tab:orange", ms=5, label="Pareto front")
        ax.set_xlabel(COST_LABEL.get(objective, "cost"))
        ax.set_ylabel("held-out exact match")
        ax.set_title("exact match against cost", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        return
    minimise = study.direction.name == "MINIMIZE"
    # Exact match on a logit scale: 0.999 and 0.9995 (one held-out problem in 2,048) stay apart
    accuracy = objective == "accuracy"
    shown = (lambda v: min(max(v, LOGIT_EDGE), 1 - LOGIT_EDGE)) if accuracy else (lambda v: v)
    ax.scatter([t.number for t in complete], [shown(t.value) for t in complete], color="tab:blue", s=14, zorder=3,
               label="complete")
    running, steps = None, []
    for t in sorted(complete, key=lambda t: t.number):
        if running is None or (t.value < running if minimise else t.value > running):
            running = t.value
        steps.append((t.number, shown(running)))
    if steps:
        ax.step([n for n, _ in steps], [v for _, v in steps], where="post", color="tab:orange", label="best so far")
    if accuracy and complete:
        ax.set_yscale("logit")
        low = min(shown(t.value) for t in complete)
        ticks = [v for v in (0.0001, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999) if v >= low / 2] + [1 - LOGIT_EDGE]
        ax.set_yticks(ticks, [f"{v:g}" for v in ticks[:-1]] + ["1"])
        ax.yaxis.set_minor_formatter("")
        ax.set_ylim(low / 2, 1 - LOGIT_EDGE / 2)
    for state, color in (("PRUNED", STATE_COLOR["PRUNED"]), ("FAIL", STATE_COLOR["FAIL"])):
        numbers = [t.number for t in trials if t.state.name == state]
        if numbers:
            ax.plot(numbers, [0.01] * len(numbers), "|", color=color, ms=10, transform=ax.get_xaxis_transform(),
                    label=f"{state.lower()} ({len(numbers)})")
    ax.set_xlabel("trial")
    ax.set_ylabel(VALUE_LABEL.get(objective, "value"))
    ax.set_title(f"objective: {objective} ({'lower' if minimise else 'higher'} is better)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def draw_importances(ax, ranked: dict[str, float]) -> None:
    names = list(ranked)[::-1]  # the largest at the top
    ax.barh(names, [ranked[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (Optuna's default evaluator)")
    ax.set_title("what mattered", fontsize=10)


def render(study: optuna.Study, ranked: dict[str, float] | None = None) -> bytes:
    """The study's picture as PNG bytes (`ranked`: the importances, when the caller has them already)."""
    plt = pyplot()

    ranked = importances(study) if ranked is None else ranked
    fig, axes = plt.subplots(1, 3 if ranked else 2, figsize=(15 if ranked else 10.5, 4.2),
                             gridspec_kw={"width_ratios": [1.3, 1, 0.8] if ranked else [1.3, 1]})
    draw_curves(axes[0], study)
    draw_values(axes[1], study)
    if ranked:
        draw_importances(axes[2], ranked)
    task, best = study.user_attrs.get("task", "?"), best_number(study)
    found = f", best {study.best_value:.6g} (#{best})" if best is not None else ""
    fig.suptitle(f"study {study.study_name!r} ({task}): {len(study.trials)} trials{found}", fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def save(study: optuna.Study, path: Path) -> None:
    path.write_bytes(render(study))


def render_plots(study: optuna.Study) -> dict[str, str | bytes]:
    """Optuna's plots as standalone HTML files, by file name, the ones with too few trials left out; and
    the study at a glance as `study.png`, which needs no script from the web to show."""
    multi = len(study.directions) > 1
    plots = {"history": visualization.plot_optimization_history,
             "importances": visualization.plot_param_importances,
             "parallel_coordinate": visualization.plot_parallel_coordinate}
    if multi:
        plots = {"pareto_front": visualization.plot_pareto_front,
                 "parallel_coordinate": visualization.plot_parallel_coordinate}
    files, ranked = {}, importances(study)
    for name, plot in plots.items():
        if name == "importances" and not ranked:
            continue  # too little to tell: Optuna would draw equal bars
        try:
            kwargs = {}
            if multi and name != "pareto_front":  # these plots show one objective: exact match
                kwargs = {"target": lambda t: t.values[0], "target_name": "exact match"}
            figure = plot(study, **kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few trials for this plot
            continue
        files[f"{name}.html"] = figure.to_html(include_plotlyjs="cdn")
    if study.trials:
        files["study.png"] = render(study, ranked)
    return files
