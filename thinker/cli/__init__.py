"""The `thinker` command line: one command per file in this folder, joined here.

    thinker tasks
    thinker train addition --device cpu
    thinker eval runs/addition-… --exhaustive
    thinker predict runs/addition-… 3e8+3e8
    thinker sweep addition --trials 50
    thinker bench --device cuda

This is the top floor: the only place that knows exit codes and terminals. Every error a user can
fix is a `ThinkerError` raised somewhere below; `ThinkerGroup.main` turns it into `thinker: error: ...`
on stderr and exit code 2, here and nowhere else. THINKER_DEBUG=1 shows a traceback for anything
unexpected.
"""

import os
import sys

import typer
from typer.core import TyperGroup

from thinker.cli import bench, predict, report, sweep, tasks, train
from thinker.cli import eval as eval_
from thinker.errors import ThinkerError, one_line


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past Typer (which would turn it into a silent exit 130)."""


class ThinkerGroup(TyperGroup):
    """Runs a command and turns whatever ends it into an exit code and at most one line on stderr.

    The console entry point and Typer's CliRunner both come through here, so tests see what users see.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted from e

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ThinkerError as e:
            print(f"thinker: error: {e}", file=sys.stderr)
            code = 2
        except (KeyboardInterrupt, _Interrupted):
            print("thinker: interrupted", file=sys.stderr)
            code = 130
        except Exception as e:
            code = _report(e)
        if standalone_mode:
            sys.exit(code or 0)
        return code


app = typer.Typer(
    name="thinker",
    cls=ThinkerGroup,
    help="Train, sweep and benchmark the thinker model on algorithmic tasks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
COMMANDS = {
    "tasks": tasks.tasks_command,
    "train": train.train_command,
    "eval": eval_.eval_command,
    "predict": predict.predict_command,
    "sweep": sweep.sweep_command,
    "report": report.report_command,
    "bench": bench.bench_command,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)
# On another machine (or in a container), joining a running sweep reads better as `thinker worker`.
app.command("worker", help="Join a sweep as one more worker: the same as `thinker sweep`, by another name.")(
    sweep.sweep_command)


def main() -> None:
    """Console entry point."""
    typer.main.get_command(app)(args=sys.argv[1:], prog_name="thinker")


def _report(error: Exception) -> int:
    """One line for an exception that escaped a command; the exit code to use."""
    # Click's errors (bad option value, missing argument), from the copy of click that Typer carries:
    # recognised by shape rather than by class.
    if hasattr(error, "format_message") and hasattr(error, "exit_code"):
        if type(error).__name__ == "NoArgsIsHelpError":
            print(error.format_message(), file=sys.stderr)
            return 0
        print(f"thinker: error: {error.format_message()}", file=sys.stderr)
        return 2
    if type(error).__name__ == "Abort":  # Ctrl-C at a prompt
        print("thinker: interrupted", file=sys.stderr)
        return 130
    if type(error).__name__ == "OutOfMemoryError":  # torch.cuda's: a smaller batch or model fits
        print(f"thinker: error: out of GPU memory ({one_line(error, 200).removeprefix('OutOfMemoryError: ')}); "
              f"a smaller --batch-size, --steps or --d-model needs less", file=sys.stderr)
        return 2
    if os.environ.get("THINKER_DEBUG"):
        raise error
    print(f"thinker: internal error: {one_line(error, 500)} (THINKER_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
