"""`thinker eval` and `thinker predict`: scoring against an independent reference, notation, bad input."""

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import tiny_train
from thinker.cli import app
from thinker.errors import ConfigError
from thinker.exam import breakdowns, carry_chains, examine, score_length
from thinker.model import Thinker, ThinkerConfig
from thinker.tasks import FIRST_SYMBOL, TASKS, ProblemError, make_task
from thinker.training import load_checkpoint, save_checkpoint, train

runner = CliRunner()
ADDITION = {"base": 16, "max_operand": 40}  # 1,681 problems: exhaustive in a blink


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    """A small addition model trained for a few seconds: right on most problems, wrong on some."""
    torch.set_num_threads(1)
    cfg = tiny_train(task="addition", task_options=ADDITION, steps=2, max_samples=12_288, target=2.0)
    out = tmp_path_factory.mktemp("addition")
    save_checkpoint(out, cfg, train(cfg))
    return out


def naive_wrong(model: Thinker, task, problems: torch.Tensor) -> set[tuple[int, ...]]:
    """The reference: one problem at a time, the plain full forward pass, every position compared."""
    wrong = set()
    with torch.no_grad():
        for row in problems:
            batch = task.encode(row[None])
            predicted = model(batch.inputs).argmax(-1)
            if not torch.equal(predicted[batch.mask], batch.targets[batch.mask]):
                wrong.add(tuple(row.tolist()))
    return wrong


def test_exhaustive_scores_agree_with_a_problem_by_problem_reference(addition_run):
    loaded = load_checkpoint(addition_run)
    exam = examine(loaded.model, loaded.task, exhaustive=True, long_size=0, workers=2)
    assert exam.mode == "exhaustive" and exam.scores.size == 41 * 41
    found = {tuple(exam.scores.problems[i].tolist()) for i in exam.wrong().tolist()}
    assert 0 < len(found) < 41 * 41  # a model that is neither perfect nor useless, so the comparison means something
    assert found == naive_wrong(loaded.model, loaded.task, exam.scores.problems)
    figures = exam.figures()
    assert figures["held_out"]["problems"] + figures["train"]["problems"] == 41 * 41
    assert figures["all"]["wrong"] == len(found)


def test_breakdowns_account_for_every_problem_and_every_wrong_one(addition_run):
    loaded = load_checkpoint(addition_run)
    exam = examine(loaded.model, loaded.task, exhaustive=True, long_size=0)
    parts = breakdowns(exam)
    wrong = int((~exam.scores.right).sum())
    for name in ("operand digits", "longest carry chain"):
        assert sum(r["problems"] for r in parts[name]) == exam.scores.size
        assert sum(r["wrong"] for r in parts[name]) == wrong
    assert sum(r["wrong"] for r in parts["first wrong answer position"]) == wrong
    assert [r["label"] for r in parts["operand digits"]] == ["1 and 1", "1 and 2", "2 and 1", "2 and 2"]


def test_carry_chains():
    a = torch.tensor([0x0, 0x1, 0xff, 0x1ff, 0x10, 0xf0f])
    b = torch.tensor([0x0, 0xf, 0x01, 0x001, 0x10, 0x0f1])
    assert carry_chains(a, b, 16).tolist() == [0, 1, 2, 2, 0, 3]


@pytest.mark.parametrize("name", list(TASKS))
def test_notation_round_trips(name):
    task = make_task(name)
    g = torch.Generator().manual_seed(0)
    for split, long in (("train", False), ("long", True)):
        for row in task.problems(20, g, split).tolist():
            assert task.parse(task.show(row)) == (row, long)
    batch = task.sample(5, g)
    for expected in (batch.targets[:, -batch.answer_slots:] - FIRST_SYMBOL).tolist():  # the answer, not scratch
        assert "?" not in task.show_answer(expected)


def test_problems_at_enumerates_each_problem_once():
    for task in (make_task("addition", max_operand=20), make_task("roll", alphabet=3, length=4),
                 make_task("copy", alphabet=2, length=5)):
        every = task.problems_at(torch.arange(task.space_size()))
        assert len({tuple(r) for r in every.tolist()}) == task.space_size()


@pytest.mark.parametrize("name, text, message", [
    ("addition", "3g8 + 1", "'g' is not a base-16 digit"),
    ("addition", "12345 + 1", "12345 is out of range; operands are 0..3e8"),
    ("addition", "3e8 - 1", "write a problem as A + B"),
    ("multiply", "ff + 2", "write a problem as A * B"),
    ("copy", "0 1 2", "copy takes 8 symbols (12 for a longer-than-training problem) separated by spaces or commas, "
                      "got 3"),
    ("copy", "01234567", "separated by spaces or commas, got 1"),
    ("copy", "0 1 2 3 4 5 6 x", "unknown symbol 'x'; symbols are 0..10"),
    ("flip", "0 1 2 3 4 5 6 11", "unknown symbol '11'"),
    ("copy", "0 1 2 3 4 5 6 \u00b2", "unknown symbol '\u00b2'"),  # a superscript two: a digit to str.isdigit
    ("roll", "0 1 2 3 4 5 6 7 >> \u00b2", "the shift must be 0..7"),
    ("roll", "0 1 2 3 4 5 6 7", "write a roll as SYMBOLS >> K"),
    ("roll", "0 1 2 3 4 5 6 7 >> 8", "the shift must be 0..7"),
])
def test_bad_problems_name_what_is_wrong(name, text, message):
    with pytest.raises(ProblemError, match="^" + repr(text).replace("+", r"\+").replace(".", r"\.")) as info:
        make_task(name).parse(text)
    assert message in str(info.value)


def test_eval_cli_tables_csv_and_json(addition_run, tmp_path):
    wrong_csv = tmp_path / "new" / "wrong.csv"  # a folder that does not exist yet
    result = runner.invoke(app, ["eval", str(addition_run), "--exhaustive", "--long", "100", "--csv", str(wrong_csv)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "exhaustive" and summary["all_problems"] == 41 * 41
    assert summary["long_problems"] == 100
    rows = list(csv.DictReader(wrong_csv.open()))
    assert len(rows) == summary["all_wrong"] + summary["long_wrong"]
    first = rows[0]
    assert f"{first['problem']} = {first['expected']}, got {first['got']}" in result.stdout
    assert "by longest carry chain" in result.stdout


def test_eval_never_writes_its_csv_over_the_checkpoint(addition_run):
    model = addition_run / "model.pt"
    before = model.read_bytes()
    for source in (addition_run, model):
        result = runner.invoke(app, ["eval", str(source), "--csv", str(model)])
        assert result.exit_code == 2
        assert result.stderr.strip() == f"thinker: error: --csv '{model}' would overwrite the checkpoint"
    assert model.read_bytes() == before


def test_eval_with_more_and_fewer_thinking_steps(addition_run):
    result = runner.invoke(app, ["eval", str(addition_run), "--steps", "1,2,4", "--sample", "200", "--long", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["steps"] for row in summary["by_steps"]] == [1, 2, 4]
    assert "2 (trained)" in result.stdout


def test_predict_answers_good_problems_and_rejects_bad_ones(addition_run):
    result = runner.invoke(app, ["predict", str(addition_run), "1+f", "zz+1", "28 + 28", "--steps-trace"])
    assert result.exit_code == 2
    assert result.stdout.startswith("1 + f = ") and "28 + 28 = " in result.stdout
    assert "after step 2:" in result.stdout
    assert result.stderr.strip() == "thinker: error: 'zz+1': 'z' is not a base-16 digit"


def test_predict_reads_stdin_and_writes_json_lines(addition_run):
    result = runner.invoke(app, ["predict", str(addition_run), "--json"], input="1 + f\n\n28+28\n")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [a["problem"] for a in answers] == ["1 + f", "28 + 28"]
    assert [a["expected"] for a in answers] == ["10", "50"]
    assert all(len(a["trace"]) == 2 and len(a["confidence"]) == 2 for a in answers)


@pytest.mark.parametrize("args, message", [
    (["eval", "no/such/run"], "no/such/run: no such run directory or checkpoint file"),
    (["eval", ""], "no run given (an empty name): pass a run directory, a model.pt, STUDY:NUMBER or an MLflow run id"),
    (["predict", " ", "1+1"], "no run given (an empty name)"),
    (["eval", "RUN", "--steps", "two"], "--steps takes integers like 1,2,4; got 'two'"),
    (["eval", "RUN", "--steps", "0"], "--steps must be at least 1, got 0"),
    (["eval", "RUN", "--length", "0"], "--length must be at least 1, got 0"),
    (["eval", "RUN", "--length", "16"], "addition makes operands of 1..15 digits, not 16"),
    (["eval", "RUN", "--length", "9"], "addition problems of length 9 need positions up to 9; the model has 0..4"),
    (["eval", "RUN", "--steps", "auto"], "--steps auto needs --length"),
    (["eval", "RUN", "--plot", "x.png"], "--plot draws the --length table: give --length too"),
    (["eval", "BROKEN"], "not a thinker checkpoint"),
    (["eval", "CSV"], "trials.csv: not a thinker checkpoint (IndexError"),  # what `report --csv` writes
    (["eval", "TENSOR"], "tensor.pt: not a thinker checkpoint (TypeError: it holds a Tensor, not a dict)"),
    (["eval", "EMPTY"], "no model.pt in this directory"),
    (["predict", "RUN"], "no problems given"),
    (["eval", "RUN", "--mlflow", "--tracking-uri", "http://127.0.0.1:9"], "tracking server http://127.0.0.1:9 is "
                                                                          "unreachable"),
    (["eval", "0123456789abcdef0123456789abcdef", "--tracking-uri", "foo://bar"], "cannot use tracking URI 'foo"),
])
def test_bad_sources_and_options_are_one_line_exit_2(args, message, addition_run, tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    (tmp_path / "trials.csv").write_text("trial,state,value\n0,COMPLETE,1.0\n")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    paths = {"RUN": str(addition_run), "BROKEN": str(tmp_path / "broken.pt"), "EMPTY": str(tmp_path / "empty"),
             "CSV": str(tmp_path / "trials.csv"), "TENSOR": str(tmp_path / "tensor.pt")}
    result = runner.invoke(app, [paths.get(a, a) for a in args], input="")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


class RightAnswerWrongScratch(torch.nn.Module):
    """A multiply 'model' that writes every answer right and every scratch slot wrong."""

    def __init__(self, task):
        super().__init__()
        self.task, self.weight = task, torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs, steps=None, shared_layout=False, tail=None, scratch=None):
        digits = inputs[:, [0, 1, 3, 4]] - FIRST_SYMBOL  # a0 a1 b0 b1: operands least significant first
        product = (digits[:, 0] + 16 * digits[:, 1]) * (digits[:, 2] + 16 * digits[:, 3])
        truth = self.task.encode(torch.stack([product, torch.ones_like(product)], 1)).targets  # answer of p * 1
        wanted = torch.full_like(inputs, FIRST_SYMBOL + 7)  # a 7 in every scratch slot: wrong for most
        wanted[:, -4:] = truth[:, -4:]
        logits = torch.nn.functional.one_hot(wanted, self.task.vocab_size).float()
        return logits[:, -tail:] if tail else logits

    def logits_per_step(self, inputs, steps=None, shared_layout=False, tail=None):
        return [self(inputs, steps, shared_layout, tail)]


def test_exact_match_scores_the_answer_not_the_scratch():
    """Multiply writes partial products before its answer: trained on, never scored."""
    from thinker.exam import score
    from thinker.training.evaluation import evaluate

    task = make_task("multiply")
    model = RightAnswerWrongScratch(task)
    batch = task.sample(256, torch.Generator().manual_seed(0), split="eval")
    assert batch.answers > batch.scored == 4
    assert evaluate(model, [batch])["exact_match"] == 1.0
    scores = score(model, task, task.problems(256, torch.Generator().manual_seed(1)))
    assert bool(scores.right.all()) and scores.answers.shape[1] == 4


def test_predict_shows_the_scratch_the_model_wrote():
    from thinker.cli.predict import predict

    task = make_task("multiply")
    model = RightAnswerWrongScratch(task)  # a 7 in every scratch slot
    answer = predict(model, task, [0x0f, 0x12])
    assert answer["answer"] == "10e" and answer["right"]
    assert answer["scratch"] == ["7777", "7777"]  # two partial products of four digits each
    plain = make_task("multiply", scratch=False)
    assert "scratch" not in predict(RightAnswerWrongScratch(plain), plain, [0x0f, 0x12])


def test_eval_by_length_and_steps(addition_run, tmp_path):
    """A table over length x steps: 'auto' runs the trained steps times length / training length, the
    picture is written, and the cells agree with `score_length` called directly."""
    picture = tmp_path / "lengths.png"
    result = runner.invoke(app, ["eval", str(addition_run), "--length", "1,2,4", "--steps", "1,auto",
                                 "--sample", "64", "--plot", str(picture)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["trained_length"], summary["trained_steps"]) == (2, 2)  # max_operand 40 = 0x28: 2 digits
    cells = [(row["length"], row["asked"], row["steps"]) for row in summary["grid"]]
    assert cells == [(1, 1, 1), (1, "auto", 2), (2, 1, 1), (2, "auto", 2), (4, 1, 1), (4, "auto", 4)]
    assert picture.stat().st_size > 0
    ckpt = load_checkpoint(addition_run)
    direct = score_length(ckpt.model, ckpt.task, 2, 1, size=64)
    assert summary["grid"][2]["exact_match"] == direct.figures()["exact_match"]
    assert bool((direct.problems >= 16).all() and (direct.problems < 256).all())  # exactly two hex digits


def test_score_length_refuses_what_the_task_or_model_cannot_hold():
    task = make_task("roll", alphabet=3, length=4)
    model = Thinker(ThinkerConfig(vocab_size=task.vocab_size, max_len=task.max_len, d_model=16))
    assert score_length(model, task, 6, size=8).size == 8  # long_length 6: the longest roll it can make
    with pytest.raises(ProblemError, match="roll makes sequences of 1..6 symbols"):
        score_length(model, task, 7, size=8)
    with pytest.raises(ConfigError, match="the model has 0..6"):
        score_length(model, make_task("copy", alphabet=3, length=4), 7, size=8)
