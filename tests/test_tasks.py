"""Task ground truth against Python integers, splits and determinism: `pytest tests/test_tasks.py`."""

import pytest
import torch

from thinker.errors import ConfigError
from thinker.tasks import ANS, FIRST_SYMBOL, PAD, SEP, TASKS, ProblemError, make_task


def digits_to_int(digits, base):
    return sum((d - FIRST_SYMBOL) * base ** i for i, d in enumerate(digits))


def split_segments(row):
    segments, current = [], []
    for t in row:
        if t == SEP:
            segments.append(current)
            current = []
        else:
            current.append(t)
    return segments, current


def decode_arithmetic(batch, base):
    """Yield (a, b, answer) as Python ints from a batch, answer read from the targets (after any scratch)."""
    for inputs, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        (a, b, *_scratch), slots = split_segments(inputs)
        assert all(t == ANS for t in slots)
        answer = targets[-batch.answer_slots:]
        assert len(answer) == len(slots)
        yield digits_to_int(a, base), digits_to_int(b, base), digits_to_int(answer, base)


@pytest.mark.parametrize("split", ["train", "eval", "long"])
def test_addition_matches_python_integers(split):
    task = make_task("addition")
    batch = task.sample(500, torch.Generator().manual_seed(1), split=split)
    for a, b, answer in decode_arithmetic(batch, 16):
        assert answer == a + b
        if split != "long":
            assert 0 <= a <= 1000 and 0 <= b <= 1000


def test_addition_carry_chains_and_zeros():
    task = make_task("addition", max_operand=0xFFF)
    problems = torch.tensor([[0xFFF, 0x001], [0, 0], [0xFFF, 0xFFF], [0x0F0, 0x010], [0x800, 0x800]])
    batch = task.encode(problems)
    got = [answer for _, _, answer in decode_arithmetic(batch, 16)]
    assert got == [0x1000, 0, 0x1FFE, 0x100, 0x1000]
    # least significant digit first: fff + 001 = 0001 reversed
    assert batch.targets[0][batch.mask[0]].tolist() == [FIRST_SYMBOL + d for d in (0, 0, 0, 1)]


def test_addition_other_base():
    task = make_task("addition", base=10, max_operand=999)
    for a, b, answer in decode_arithmetic(task.sample(200, torch.Generator().manual_seed(0)), 10):
        assert answer == a + b


def test_multiply_matches_python_integers():
    task = make_task("multiply", scratch=False)
    for a, b, answer in decode_arithmetic(task.sample(300, torch.Generator().manual_seed(2)), 16):
        assert answer == a * b


@pytest.mark.parametrize("split", ["train", "long"])
def test_multiply_scratch_is_the_partial_products_of_long_multiplication(split):
    task = make_task("multiply")
    batch = task.sample(300, torch.Generator().manual_seed(3), split=split)
    width = 3 if split == "long" else 2
    assert batch.answer_slots == batch.scored == task.answer_digits(width)
    assert batch.answers == (width + 1) * batch.scored + width  # width partial products closed by SEP, the answer
    for inputs, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        (a, b, *scratch_slots), answer_slots = split_segments(inputs)
        a, b = digits_to_int(a, 16), digits_to_int(b, 16)
        assert all(t == ANS for slots in scratch_slots for t in slots) and set(answer_slots) == {ANS}
        tail = targets[-batch.answers:]
        partials = [digits_to_int(tail[i * (batch.scored + 1):(i + 1) * (batch.scored + 1) - 1], 16)
                    for i in range(width)]
        b_digits = [b // 16 ** j % 16 for j in range(width)]
        assert partials == [a * d * 16 ** j for j, d in enumerate(b_digits)]
        assert digits_to_int(tail[-batch.scored:], 16) == a * b == sum(partials)


def test_sequence_tasks_ground_truth():
    g = torch.Generator().manual_seed(3)
    expected = {"copy": lambda x, k: x, "flip": lambda x, k: x[::-1], "sort": lambda x, k: sorted(x),
                "roll": lambda x, k: x[-k:] + x[:-k] if k else x}
    for name, rule in expected.items():
        task = make_task(name)
        batch = task.sample(200, g)
        for inputs, targets, mask in zip(batch.inputs.tolist(), batch.targets.tolist(), batch.mask.tolist()):
            segments, _ = split_segments(inputs)
            x = segments[0]
            k = segments[1][0] - FIRST_SYMBOL - task.alphabet if name == "roll" else 0
            assert [t for t, m in zip(targets, mask) if m] == rule(x, k), name


def test_binary_copy_is_the_logs_task():
    task = make_task("copy", alphabet=2, length=4)
    batch = task.sample(64, torch.Generator().manual_seed(0))
    symbols = batch.inputs[:, :4] - FIRST_SYMBOL
    assert set(symbols.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("name", list(TASKS))
def test_train_and_held_out_are_disjoint(name):
    task = make_task(name)
    g = torch.Generator().manual_seed(0)
    train = task.sample(4000, g, split="train")
    held_out = task.sample(1000, g, split="eval")

    def problems(batch):
        if name in ("addition", "multiply"):  # a+b and b+a are one problem
            return {tuple(sorted((a, b))) for a, b, _ in decode_arithmetic(batch, task.base)}
        return {tuple(row[~m].tolist()) for row, m in zip(batch.inputs, batch.mask)}

    train_keys, held_keys = problems(train), problems(held_out)
    assert train_keys.isdisjoint(held_keys)
    assert 0.05 < task.is_held_out(task.draw(20000, g, long=False)).float().mean() < 0.15


def test_long_split_is_longer():
    for name in TASKS:
        task = make_task(name)
        g = torch.Generator().manual_seed(0)
        assert task.sample(8, g, "long").inputs.shape[1] > task.sample(8, g).inputs.shape[1]


def test_same_seed_same_batches():
    task = make_task("addition")
    a = task.sample(64, torch.Generator().manual_seed(7))
    b = task.sample(64, torch.Generator().manual_seed(7))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)


def test_targets_are_pad_outside_answers():
    batch = make_task("flip").sample(16, torch.Generator().manual_seed(0))
    assert (batch.targets[~batch.mask] == PAD).all()
    assert (batch.inputs[batch.mask] == ANS).all()


def test_bad_task_and_options():
    with pytest.raises(ValueError, match="unknown task"):
        make_task("divide")
    with pytest.raises(ValueError, match="base"):
        make_task("addition", base=1)
    with pytest.raises(ValueError):
        make_task("copy", colour="red")
    with pytest.raises(ValueError, match="scratch must be true or false, got 'maybe'"):
        make_task("multiply", scratch="maybe")  # what `-o scratch=maybe` passes


@pytest.mark.parametrize("name", sorted(TASKS))
def test_fixed_shape_draws_keep_the_split_and_the_seed(name):
    """The draw a GPU step uses (no data-dependent shape): never a problem of the other split."""
    task = make_task(name)
    for keep_held_out in (False, True):
        problems = task._draw_fixed(256, torch.Generator().manual_seed(0), keep_held_out)
        assert problems.shape[0] == 256
        assert bool((task.is_held_out(problems) == keep_held_out).all())
        assert len({tuple(row) for row in problems.tolist()}) > 200  # not one problem repeated
    again = task._draw_fixed(256, torch.Generator().manual_seed(0), False)
    assert torch.equal(again, task._draw_fixed(256, torch.Generator().manual_seed(0), False))
    batch = task.sample(64, torch.Generator().manual_seed(0), fixed_shape=True)
    assert batch.inputs.shape == task.sample(64, torch.Generator().manual_seed(0)).inputs.shape


@pytest.mark.parametrize("name, options, message", [
    ("copy", {"length": 2.5}, "copy option length must be an integer, got 2.5"),
    ("copy", {"alphabet": 1e30}, "copy option alphabet must be an integer, got 1e+30"),
    ("copy", {"long_length": "9"}, "copy option long_length must be an integer, got '9'"),
    ("addition", {"base": True}, "addition option base must be an integer, got True"),
    ("addition", {"holdout": float("nan")}, "addition option holdout must be a finite number, got nan"),
    ("multiply", {"scratch": "yes"}, "multiply option scratch must be true or false, got 'yes'"),
    ("roll", {"colour": 1}, "roll: unknown option(s) colour; it takes alphabet, length, long_length, holdout"),
])
def test_task_options_of_the_wrong_type_are_one_clear_error(name, options, message):
    """From -o KEY=VALUE (JSON) or a space file: caught at once, not as a crash once training has started."""
    with pytest.raises(ConfigError) as info:
        make_task(name, **options)
    assert str(info.value) == message


def test_problems_of_a_chosen_length():
    g = torch.Generator().manual_seed(0)
    addition = make_task("addition")
    problems = addition.problems_of_length(500, g, 6)
    assert bool((problems >= 16 ** 5).all() and (problems < 16 ** 6).all())
    batch = addition.encode(problems, length=6)
    a, b = problems[:, 0], problems[:, 1]
    answer = batch.targets[:, -batch.answers:] - FIRST_SYMBOL
    assert batch.answers == 7 and torch.equal((answer * 16 ** torch.arange(7)).sum(1), a + b)
    assert addition.train_length == 3 and make_task("copy", length=5).train_length == 5
    fff = addition.encode(torch.tensor([[0xfff, 0xfff]]), length=3)  # the training length, past max_operand
    assert (fff.targets[0, -fff.answers:] - FIRST_SYMBOL).tolist() == [0xe, 0xf, 0xf, 0x1]  # 0x1ffe, not cut
    assert make_task("roll", length=4).problems_of_length(3, g, 6).shape == (3, 7)  # the shift as a last column
    for task, length, message in [(addition, 0, "1..15 digits, not 0"), (make_task("multiply"), 8, "1..7 digits"),
                                  (make_task("copy"), 0, "at least 1 symbol"),
                                  (make_task("roll", length=4), 7, "1..6 symbols")]:
        with pytest.raises(ProblemError, match=message):
            task.problems_of_length(3, g, length)


def test_addition_length_option_trains_every_operand_of_that_many_digits():
    task = make_task("addition", length=2)
    assert (task.max_operand, task.train_length, task.space_size()) == (255, 2, 256 ** 2)
    batch = task.encode(torch.tensor([[0xff, 0xff]]))
    assert batch.answers == 3  # 0x1fe: the carry out of the top digit is trained too
    with pytest.raises(ConfigError, match="length must not be negative"):
        make_task("addition", length=-1)


def test_addition_pad_writes_operands_as_wide_as_the_answer_in_random_widths():
    task = make_task("addition", pad=6)
    g = torch.Generator().manual_seed(0)
    widths = {task.sample(8, g).answers for _ in range(40)}
    assert widths == {4, 5, 6, 7}  # operand widths 3..6, one digit more for the answer
    batch = task.encode(torch.tensor([[0xfff, 0x1]]), length=3)  # fff + 1 = 1000: the carry beside two zeros
    assert batch.inputs[0].tolist() == [18, 18, 18, 3, SEP, 4, 3, 3, 3, SEP, ANS, ANS, ANS, ANS]
    assert (batch.targets[0, -4:] - FIRST_SYMBOL).tolist() == [0, 0, 0, 1]
    assert task.sample(8, g, split="eval").answers == 4 and task.max_len == 8
    with pytest.raises(ConfigError, match="pad must be 0 or at least the operands' 3 digits"):
        make_task("addition", pad=2)
