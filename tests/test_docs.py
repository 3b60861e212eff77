"""The documents stay true: `pytest tests/test_docs.py`.

* Every `thinker ...` command line in README.md, docs/*.md and bench/README.md (in code blocks and in
  inline code) names a command the command line has, and only options that command has. The
  commands and options come from the real Typer app (`typer.main.get_command`), so renaming an option
  in the code without the documents (or the other way round) fails here.
* An option table whose first header cell names a command (`| \\`thinker sweep\\` option | ...`) lists
  only that command's options; `python -m MODULE` names a module that exists.
* Every relative link and image resolves to a file or folder, and every `#anchor` into a Markdown
  file to one of its headings, slugged as GitHub slugs them.

Nothing runs a subprocess: the documents are read as text and the CLI is introspected in-process.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest
import typer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDES = ("cli", "sweeps", "eval", "bench", "scale-out", "model")
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
README_MAX_LINES = 200  # a front page; the detail lives in docs/ and bench/README.md

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)  # may run over a line break
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:[ \t]+.*)?$", re.M)
SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
PREFIXES = {"$", "time", "nohup", "exec", "srun", "env"}  # before a command: it is still in command position
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Line:
    """One line of a document: its number, its text, and whether it sits in a fenced code block."""

    number: int
    text: str
    code: bool


def lines(text: str) -> list[Line]:
    """The document's lines, fenced code blocks marked (a line ending in `\\` joined with the next)."""
    out: list[Line] = []
    fence = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        match = FENCE.match(raw)
        if match and (fence is None or (match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence))):
            fence = match.group(1) if fence is None else None
            out.append(Line(number, "", True))  # a fence ends a paragraph
            continue
        if fence is not None:
            if raw.endswith("\\"):
                pending += raw[:-1] + " "
                continue
            out.append(Line(number, pending + raw, True))
            pending = ""
        else:
            out.append(Line(number, raw, False))
    return out


# ---- command lines ---------------------------------------------------------------------------------


@cache
def cli() -> dict[str, set[str]]:
    """Each command of the real `thinker` app (and "" for the group itself) with its option names."""
    from thinker.cli import app

    group = typer.main.get_command(app)

    def options(command) -> set[str]:
        ctx = command.context_class(command, info_name=command.name)
        return {name for p in command.get_params(ctx) if p.param_type_name == "option"
                for name in (*p.opts, *p.secondary_opts)}

    return {"": options(group)} | {name: options(command) for name, command in group.commands.items()}


def tokens(shell: str) -> list[str]:
    """A shell line as words (`#` comments dropped); an unbalanced quote falls back to whitespace."""
    try:
        words = shlex.split(shell, comments=True)
    except ValueError:
        words = shell.split()
    return [part for word in words  # `a; b`: the `;` is a word of its own
            for part in ((word[:-1], word[-1]) if len(word) > 1 and word[-1] == ";" else (word,))]


def invocations(shell: str) -> list[list[str]]:
    """The argument lists of every `thinker` (or `python -m thinker`) in command position on a line."""
    found: list[list[str]] = []
    segment: list[str] = []
    current: list[str] | None = None
    for word in tokens(shell):
        if word in SEPARATORS:
            segment, current = [], None
            continue
        if current is not None:
            current.append(word)
        elif word == "thinker" and all(w in PREFIXES or ENV_ASSIGNMENT.match(w) or w in ("-m",)
                                       or re.fullmatch(r"python3?(\.\d+)?", w) for w in segment):
            current = []
            found.append(current)
        segment.append(word)
    return found


def modules(shell: str) -> list[str]:
    """The modules a line runs with `python -m MODULE`."""
    words = tokens(shell)
    return [words[i + 1] for i in range(len(words) - 1)
            if re.fullmatch(r"python3?(\.\d+)?", words[i - 1] if i else "") and words[i] == "-m"]


def is_option(word: str) -> bool:
    return word.startswith("-") and word not in ("-", "--") and not re.match(r"-\.?\d", word)


def check_invocation(args: list[str], commands: dict[str, set[str]]) -> list[str]:
    """What is wrong with `thinker ARGS` against `commands` (name -> option names): empty when right."""
    problems = []
    if not args or args[0] in ("…", "..."):  # `thinker …`: any command line
        return problems
    name, rest = ("", args) if is_option(args[0]) else (args[0], args[1:])
    if name.isupper():  # a placeholder (`thinker COMMAND --help`): only what every command has
        allowed = set.intersection(*(options for c, options in commands.items() if c))
    elif name in commands:
        allowed = commands[name]
    else:
        return [f"no command {name!r} (thinker has {', '.join(sorted(c for c in commands if c))})"]
    for word in rest:
        if word == "--":
            break
        option = word.split("=", 1)[0]
        if is_option(word) and option not in allowed:
            problems.append(f"thinker {name or '(group)'} has no option {option}")
    return problems


def is_row(text: str) -> bool:
    return text.lstrip().startswith("|")


def blocks(doc: list[Line]) -> list[Line]:
    """Code lines, table rows and headings one by one; other prose joined into paragraphs (numbered by
    their first line), since inline code and links may run over a line break."""
    out: list[Line] = []
    paragraph: list[Line] = []
    for line in [*doc, Line(0, "", True)]:
        if line.code or not line.text.strip() or is_row(line.text) or HEADING.match(line.text):
            if paragraph:
                out.append(Line(paragraph[0].number, "\n".join(p.text for p in paragraph), False))
                paragraph = []
            if line.number and line.text.strip():
                out.append(line)
        else:
            paragraph.append(line)
    return out


def spans(block: Line) -> list[tuple[int, str]]:
    """(line, text) where commands can be: the whole of a code line, the inline code spans of prose."""
    if block.code:
        return [(block.number, block.text)]
    text = block.text.replace("\\|", "|") if is_row(block.text) else block.text
    return [(block.number + text.count("\n", 0, m.start()), " ".join(m.group(2).split()))
            for m in CODE_SPAN.finditer(text)]


def table_options(doc: list[Line], commands: dict[str, set[str]]) -> list[tuple[int, str]]:
    """Options in the first column of a table headed by a command (`| \\`thinker sweep\\` option |`)."""
    problems = []
    command = None
    in_table = False
    for line in doc:
        if line.code or not line.text.lstrip().startswith("|"):
            in_table = False
            continue
        if not in_table:  # the header row
            in_table = True
            header = re.search(r"`thinker ([a-z-]+)`", line.text.strip().strip("|").split("|")[0])
            command = header.group(1) if header else None
            continue
        if command is None or re.fullmatch(r"[\s:|-]*", line.text):
            continue
        first = line.text.strip().strip("|").replace("\\|", "\x00").split("|")[0].replace("\x00", "|")
        for code in CODE_SPAN.finditer(first):
            for word in code.group(2).split():
                if is_option(word):
                    problems += [(line.number, p) for p in check_invocation([command, word], commands)]
    return problems


def command_problems(text: str, commands: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, problem) for every command, option or module in a document that does not exist."""
    doc = lines(text)
    problems = []
    for block in blocks(doc):
        for number, span in spans(block):
            for args in invocations(span):
                problems += [(number, f"`thinker {' '.join(args)}`: {p}") for p in check_invocation(args, commands)]
            for module in modules(span):
                if not module_exists(module):
                    problems.append((number, f"`python -m {module}`: no such module"))
    return problems + table_options(doc, commands)


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


# ---- links and anchors -----------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(?<![\w`])_(.+?)_(?![\w`])", r"\1", text)  # _emphasis_ (code keeps its underscores)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown document, with GitHub's -1, -2 for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in lines(text):
        match = None if line.code else HEADING.match(line.text)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_targets(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link, image and reference definition outside code."""
    out = []
    for block in blocks(lines(text)):
        if block.code:
            continue
        prose = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), block.text)  # offsets kept
        found = [*LINK.finditer(prose), *REFERENCE.finditer(prose)]
        out += [(block.number + prose.count("\n", 0, m.start()), m.group(1))
                for m in sorted(found, key=lambda m: m.start())]
    return out


def link_problems(path: Path, text: str) -> list[tuple[int, str]]:
    """(line, problem) for every relative link of `path` that leads to no file, folder or heading."""
    problems = []
    for number, target in link_targets(text):
        if not target or SCHEME.match(target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file)).resolve() if file else path
        if not resolved.exists():
            problems.append((number, f"{target}: no such file"))
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text() if file else text):
            problems.append((number, f"{target}: no heading #{anchor} in {resolved.name}"))
    return problems


# ---- the documents ---------------------------------------------------------------------------------


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def report(path: Path, problems: list[tuple[int, str]]) -> str:
    return "\n".join(f"{name(path)}:{number}: {problem}" for number, problem in problems)


def test_the_guides_exist_and_the_front_page_links_each():
    readme = README.read_text()
    missing = [guide for guide in GUIDES if not (ROOT / "docs" / f"{guide}.md").is_file()]
    unlinked = [guide for guide in GUIDES if f"](docs/{guide}.md" not in readme]
    assert not missing and not unlinked, f"missing in docs/: {missing}; not linked from README.md: {unlinked}"


def test_the_front_page_stays_short():
    count = len(README.read_text().splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines: move detail to docs/ or bench/README.md"


def test_the_commands_table_lists_every_command():
    readme = README.read_text()
    listed = {m.group(1) for m in re.finditer(r"^\| `thinker ([a-z-]+)", readme, re.M)}
    assert listed == set(cli()) - {""}


@pytest.mark.parametrize("path", DOCS, ids=name)
def test_commands_and_options_exist(path):
    problems = command_problems(path.read_text(), cli())
    assert not problems, "\n" + report(path, problems)


@pytest.mark.parametrize("path", DOCS, ids=name)
def test_links_resolve(path):
    problems = link_problems(path, path.read_text())
    assert not problems, "\n" + report(path, problems)


# ---- the checker itself ----------------------------------------------------------------------------

COMMANDS = {"": {"--help"}, "sweep": {"--trials", "--storage", "-v", "--verbose", "--help"},
            "train": {"--device", "--cuda-graph", "--no-cuda-graph", "-o", "--option", "--help"}}


def test_a_bogus_option_in_a_document_is_reported():
    doc = "Run `thinker sweep addition --trails 50` to start.\n\n```bash\nthinker train copy --devise cpu\n```\n"
    assert command_problems(doc, COMMANDS) == [(1, "`thinker sweep addition --trails 50`: thinker sweep has no option "
                                                   "--trails"),
                                               (4, "`thinker train copy --devise cpu`: thinker train has no option "
                                                   "--devise")]


def test_an_unknown_command_is_reported():
    [(number, problem)] = command_problems("```\nX=1 thinker swep addition\n```\n", COMMANDS)
    assert number == 2 and problem.startswith("`thinker swep addition`: no command 'swep'")


def test_right_commands_pass_and_prose_is_not_a_command():
    doc = "\n".join([
        "`thinker sweep addition --trials=50 -v` and `thinker` and `thinker train TASK -o alphabet=2`, `thinker …`",
        "`thinker: error: <one line>` is what it prints; `pip install thinker` is not a command line",
        "```bash",
        "thinker train addition --no-cuda-graph | tail -1 | python -m json.tool   # --bogus in a comment",
        "python -m thinker sweep copy \\",
        "    --trials 5 --storage sqlite:///x.db",
        "thinker train copy --device cpu --help; thinker train predict -- --not-an-option",
        "```",
    ])
    assert command_problems(doc, COMMANDS) == []
    assert command_problems("```\npython -m thinker sweep copy \\\n    --trails 5\n```\n", COMMANDS) \
        == [(3, "`thinker sweep copy --trails 5`: thinker sweep has no option --trails")]


def test_inline_code_over_a_line_break_is_one_command():
    doc = ("Intro line.\nThen `thinker sweep copy\n--trails 5` and\n`thinker\nsweep -v`.\n\n"
           "```\nthinker sweep\n```\nAfter `thinker x` and `thinker COMMAND --help` but `thinker CMD -v`.\n")
    assert command_problems(doc, COMMANDS) == [
        (2, "`thinker sweep copy --trails 5`: thinker sweep has no option --trails"),
        (10, "`thinker x`: no command 'x' (thinker has sweep, train)"),
        (10, "`thinker CMD -v`: thinker CMD has no option -v")]


def test_option_tables_are_checked_against_their_command():
    doc = "| `thinker sweep` option | meaning |\n| --- | --- |\n| `--trials N` | target |\n" \
          "| `-v`, `--verbose` | chatty |\n| `--jobs N\\|auto` | workers |\n\n| `--jobs` | not a command's table |\n"
    assert command_problems(doc, COMMANDS) == [(5, "thinker sweep has no option --jobs")]


def test_python_modules_must_exist():
    doc = "`python -m thinker.bench.learning` and `python -m thinker.bench.nowhere --json x`\n"
    assert command_problems(doc, COMMANDS) == [(1, "`python -m thinker.bench.nowhere`: no such module")]


@pytest.mark.parametrize("heading, anchor", [
    ("Browsing results in MLflow", "browsing-results-in-mlflow"),
    ("Profiling: `thinker bench`", "profiling-thinker-bench"),
    ("The GPU run", "the-gpu-run"),
    ("`--trials-per-device` and `max_samples`", "--trials-per-device-and-max_samples"),
    ("Scale out (PostgreSQL + MLflow)", "scale-out-postgresql--mlflow"),
    ("See [the guide](docs/cli.md) _now_", "see-the-guide-now"),
    ("Übersicht 2", "übersicht-2"),
])
def test_slugs_follow_github(heading, anchor):
    assert slug(heading) == anchor


def test_repeated_headings_and_code_blocks():
    doc = "# Setup\n## Setup\n```bash\n# not a heading\n```\n### Setup ###\n"
    assert anchors(doc) == {"setup", "setup-1", "setup-2"}


def test_broken_links_and_anchors_are_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "there.md").write_text("# Here it is\n")
    page = tmp_path / "docs" / "page.md"
    text = "\n".join([
        "[ok](../there.md#here-it-is) [top](#a-heading) ![pic](../there.md) <http://example.com/x>",
        "[gone](../missing.md) [bad anchor](../there.md#nowhere) [self](#nothing) [web](https://example.com/#x)",
        "`[in code](nowhere.md)`",
        "## A heading",
        "[ref]: ../also-missing.txt",
        "",
        "A [link over",
        "two lines](../gone-too.md) and `code over",
        "two lines [x](nowhere.md)`.",
    ])
    page.write_text(text)
    assert link_problems(page, text) == [(2, "../missing.md: no such file"),
                                         (2, "../there.md#nowhere: no heading #nowhere in there.md"),
                                         (2, "#nothing: no heading #nothing in page.md"),
                                         (5, "../also-missing.txt: no such file"),
                                         (7, "../gone-too.md: no such file")]
