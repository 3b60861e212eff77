"""`thinker predict SOURCE PROBLEM...`: what a trained model answers, how sure it is, and what each step buys.

    thinker predict runs/addition-20261129-101500 3e8+3e8 "1 + f"
    thinker predict runs/copy-20261129-101500 "0 1 1 0 1 0 1 1"
    thinker predict runs/roll-20261129-101500 "1 2 3 4 5 6 7 8 >> 3" --steps-trace
    printf '1+f\\n2ff+1\\n' | thinker predict runs/addition-20261129-101500

Problems are written in the task's own notation (`thinker tasks` names the tasks; numbers in their
base, most significant digit first). A problem the task cannot read gets one line on stderr and the
exit code 2; the others are still answered.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import torch
import typer
from rich.console import Console

from thinker.cli.options import Device, Storage, TrackingUri, UsageError
from thinker.cli.progress import stderr
from thinker.cli.source import open_source
from thinker.device import configure_torch
from thinker.model import Thinker
from thinker.tasks import FIRST_SYMBOL, SEP, ProblemError, Task


def predict_command(
    source: Annotated[str, typer.Argument(help="Run directory, model.pt, STUDY:TRIAL or an MLflow run id.")],
    problems: Annotated[list[str] | None, typer.Argument(
        help="Problems in the task's notation (3e8+3e8, \"0 1 1 0\", \"1 2 3 >> 1\"); none or '-': one per line "
             "from stdin.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Thinking steps [default: as trained].")] = None,
    steps_trace: Annotated[bool, typer.Option(help="Also show the answer after every thinking step.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per problem instead of text.")] = False,
    device: Device = "cpu",
    storage: Storage = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Answer problems with a trained model: answer, expected answer, per-token confidence, per-step answers."""
    texts = problems if problems and problems != ["-"] else [line for line in sys.stdin.read().splitlines()
                                                              if line.strip()]
    if not texts:
        raise UsageError("no problems given: pass them as arguments or one per line on stdin")
    configure_torch()
    ckpt = open_source(source, device, storage, tracking_uri).checkpoint
    task, model = ckpt.task, ckpt.model
    bad = 0
    console = Console(highlight=False)
    for text in texts:
        try:
            problem, long = task.parse(text)
        except ProblemError as e:
            stderr.print(f"thinker: error: {e}")
            bad += 1
            continue
        answer = predict(model, task, problem, long, steps)
        if as_json:
            print(json.dumps(answer))
        else:
            console.print(_line(answer, steps_trace), markup=False)
    if bad:
        raise typer.Exit(2)


@torch.inference_mode()
def predict(model: Thinker, task: Task, problem: list[int], long: bool = False, steps: int | None = None) -> dict:
    """The answer after every thinking step, with the probability of each answer token and the expected answer."""
    device = next(model.parameters()).device
    batch = task.encode(torch.tensor([problem], device=device), long=long)
    n = batch.answer_slots  # the answer proper: the last n slots, after any scratch
    expected = (batch.targets[0, -n:] - FIRST_SYMBOL).tolist()
    scratch_slots = batch.inputs[0, -batch.answers:-n] if batch.answers > n else batch.inputs[0, :0]
    trace = []
    for logits in model.logits_per_step(batch.inputs, steps, shared_layout=True, tail=batch.answers):
        confidence, tokens = logits[0].float().softmax(-1).max(-1)
        symbols = (tokens[-n:] - FIRST_SYMBOL).tolist()
        trace.append({"answer": task.show_answer(symbols), "right": symbols == expected,
                      "confidence": [round(c, 4) for c in task.reading_order(confidence[-n:].tolist())]})
        if scratch_slots.numel():
            trace[-1]["scratch"] = _scratch(task, scratch_slots, tokens[:-n])
    return {"problem": task.show(problem), "longer_than_training": long, "expected": task.show_answer(expected),
            **trace[-1], "steps": len(trace), "trace": trace}


def _scratch(task: Task, slots: torch.Tensor, tokens: torch.Tensor) -> list[str]:
    """The scratch segments the model wrote (slots is the inputs there: ANS, with SEP between segments)."""
    segments, current = [], []
    for slot, token in zip(slots.tolist(), (tokens - FIRST_SYMBOL).tolist()):
        if slot == SEP:
            segments.append(task.show_answer(current))
            current = []
        else:
            current.append(token)
    return segments + ([task.show_answer(current)] if current else [])


def _line(answer: dict, steps_trace: bool) -> str:
    mark = "right" if answer["right"] else f"wrong, expected {answer['expected']}"
    confidence = " ".join(f"{c:.2f}" for c in answer["confidence"])
    text = f"{answer['problem']} = {answer['answer']}  ({mark}; confidence {confidence})"
    if answer["longer_than_training"]:
        text += "  [longer than training]"
    if answer.get("scratch"):
        text += f"  [scratch {' + '.join(answer['scratch'])}]"
    if steps_trace:
        for i, step in enumerate(answer["trace"], 1):
            text += (f"\n  after step {i}: {step['answer']:>{len(answer['expected'])}}  "
                     f"{'right' if step['right'] else 'wrong'}  min confidence {min(step['confidence']):.2f}")
    return text
