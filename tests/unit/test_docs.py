"""The documentation holds to the code: the README stays a five-minute read that starts with
the two commands, every relative link lands on a file (and heading), every command synopsis
in the README and docs/ names real commands and flags (as `collector COMMAND --help` prints
them), every command is documented, and the exit codes page is the code's table."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from collector.cli.exits import MEANINGS, Exit
from tests.helpers import ROOT, run_collector

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 150  # up to and including "Where next"
FIRST_COMMANDS = (
    "bash scripts/bootstrap.sh && .venv/bin/collector run-once --config configs/default.yml",
    "bash scripts/bootstrap.sh --services && .venv/bin/python -m pytest",
)
# Where every command must have a synopsis.
COMMAND_PAGES = (DOCS / "commands.md", DOCS / "ab-and-bisect.md")
PREFIXES = ("collector", ".venv/bin/collector")

Command = tuple[str, ...]  # () for `collector` itself, ("db", "migrate"), ...


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- `--help`, run once per command and cached ------------------------------------------------

_HELP: dict[Command, str | None] = {}


def _run_help(command: Command) -> str | None:
    proc = run_collector(*command, "--help", timeout=60)
    return proc.stdout if proc.returncode == 0 else None


def fetch_help(commands: Iterable[Command]) -> None:
    """Fill the cache for these commands, each `--help` a fresh interpreter, in parallel."""
    missing = sorted({c for c in commands if c not in _HELP})
    with ThreadPoolExecutor(max_workers=4) as pool:
        for command, text in zip(missing, pool.map(_run_help, missing), strict=True):
            _HELP[command] = text


def help_text(command: Command) -> str | None:
    """`collector COMMAND --help`'s output, None when that is not a command."""
    if command not in _HELP:
        fetch_help([command])
    return _HELP[command]


def subcommands(help_output: str) -> list[str]:
    """The commands (or actions) a help lists under its positional arguments (argparse
    indents sub-parsers' names by four spaces; a plain positional such as SIDE by two)."""
    section = help_output.partition("positional arguments:")[2].partition("\noptions:")[0]
    return re.findall(r"(?m)^ {4}([a-z][a-z0-9-]*)(?: |$)", section)


def help_flags(help_output: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", help_output))


def top_level_commands() -> list[str]:
    text = help_text(())
    assert text is not None, "collector --help failed"
    return subcommands(text)


# -- synopses in the Markdown -----------------------------------------------------------------

@dataclass(frozen=True)
class Synopsis:
    where: str  # file:line
    text: str  # `collector ...` with its continuation lines, comments removed


def fenced_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number of the first line inside, lines) of each fenced code block."""
    lines = text.splitlines()
    inside: list[str] | None = None
    start = 0
    fence = ""
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if inside is None and stripped.startswith(("```", "~~~")):
            inside, start, fence = [], number + 1, stripped[:3]
        elif inside is not None and stripped.startswith(fence):
            yield start, inside
            inside = None
        elif inside is not None:
            inside.append(line)


def _uncommented(line: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", line).rstrip()


def _collector_part(line: str) -> str | None:
    """The `collector ...` command of a shell line (also after `&&`, `;`, a `$ ` prompt)."""
    for segment in re.split(r"&&|\|\||;", _uncommented(line)):
        words = segment.strip().removeprefix("$ ").strip()
        if words.split(" ", 1)[0] in PREFIXES:
            return words
    return None


def synopses_in(lines: list[str], first_line: int, name: str) -> Iterator[Synopsis]:
    """Every command in a code block: a line with `collector ...`, then its continuation
    lines (indented, or after a trailing backslash) up to the next command or a blank."""
    current: list[str] | None = None
    where = ""
    for offset, line in enumerate(lines):
        command = _collector_part(line)
        continues = current is not None and (line[:1].isspace() or current[-1].endswith("\\"))
        if command is None and continues and line.strip():
            assert current is not None
            current.append(_uncommented(line).strip())
            continue
        if current is not None:
            yield Synopsis(where, " ".join(current))
            current = None
        if command is not None:
            current, where = [command], f"{name}:{first_line + offset}"
    if current is not None:
        yield Synopsis(where, " ".join(current))


def synopses(paths: Iterable[Path]) -> list[Synopsis]:
    found: list[Synopsis] = []
    for path in paths:
        for first_line, lines in fenced_blocks(path.read_text(encoding="utf-8")):
            found.extend(synopses_in(lines, first_line, _name(path)))
    return found


@dataclass(frozen=True)
class Parsed:
    commands: list[Command]  # every alternative: ("db", "migrate"), ("db", "status"), ...
    flags: list[str]
    problems: list[str]


def parse(text: str) -> Parsed:
    """A synopsis' commands (alternatives `a|b` split) and flags, checked against `--help`:
    the command words must be real commands, every flag must be in each alternative's
    help."""
    words = text.replace("\\", " ").split()
    words = words[1:] if words and words[0] in PREFIXES else words
    flags = re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", " ".join(words))
    if not words or words[0].startswith("-"):
        return Parsed([()], flags, _flag_problems([()], flags))
    known = top_level_commands()
    names = words[0].split("|")
    problems = [f"`{n}` is not a command (collector --help lists {', '.join(known)})"
                for n in names if n not in known]
    if problems:
        return Parsed([], flags, problems)
    fetch_help((n,) for n in names)
    commands: list[Command] = []
    for name in names:
        group = help_text((name,))
        assert group is not None
        actions = subcommands(group)
        token = words[1].strip("[]") if len(words) > 1 else ""
        if not actions or not token or token.startswith("-"):
            commands.append((name,))
            continue
        for action in token.split("|"):
            if action in actions:
                commands.append((name, action))
            else:
                problems.append(f"`{action}` is not an action of `collector {name}` "
                                f"(it has {', '.join(actions)})")
    return Parsed(commands, flags, problems + _flag_problems(commands, flags))


def _flag_problems(commands: list[Command], flags: list[str]) -> list[str]:
    fetch_help(commands)
    problems = []
    for command in commands:
        text = help_text(command)
        shown = " ".join(("collector", *command))
        if text is None:
            problems.append(f"`{shown} --help` failed")
            continue
        known = help_flags(text)
        problems += [f"{flag} is not a flag of `{shown}` (not in its --help)"
                     for flag in dict.fromkeys(flags) if flag not in known]
    return problems


def check_synopsis(text: str) -> list[str]:
    return parse(text).problems


# -- links ------------------------------------------------------------------------------------

LINK = re.compile(r"(!?)\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (links there are code)."""
    text = re.sub(r"(?ms)^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", "", text)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings (lower case, punctuation dropped, spaces to
    hyphens, repeats numbered)."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for heading in re.findall(r"(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$", prose_keep_code(text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def prose_keep_code(text: str) -> str:
    """The text without fenced code blocks (a YAML comment is no heading)."""
    return re.sub(r"(?ms)^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", "", text)


@dataclass(frozen=True)
class Link:
    page: Path
    target: str
    image: bool


def relative_links(paths: Iterable[Path]) -> list[Link]:
    links = []
    for path in paths:
        for bang, target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
                continue
            links.append(Link(path, target, bool(bang)))
    return links


def link_problem(link: Link) -> str | None:
    file_part, _, anchor = link.target.partition("#")
    target = (link.page.parent / file_part).resolve() if file_part else link.page
    shown = f"{_name(link.page)}: {link.target}"
    if not target.exists():
        return f"{shown}: no such file"
    if anchor and target.suffix == ".md" and anchor not in heading_anchors(
            target.read_text(encoding="utf-8")):
        return f"{shown}: no heading with anchor #{anchor} in {_name(target)}"
    return None


# -- the README -------------------------------------------------------------------------------

def test_the_readme_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), lines[0]
    assert lines[1:6] == ["", "```sh", *FIRST_COMMANDS, "```"], lines[:6]


def test_the_readme_is_short_up_to_where_next() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert "## Where next" in lines, "README.md has no '## Where next' section"
    start = lines.index("## Where next")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    while end > start and not lines[end - 1].strip():
        end -= 1
    assert end <= MAX_README_LINES, (
        f"README.md is {end} lines up to the end of 'Where next' (at most "
        f"{MAX_README_LINES}): move the reference into docs/")


def test_every_relative_link_points_to_a_file_and_heading() -> None:
    links = [link for link in relative_links(pages()) if not link.image]
    assert links, "no relative links found: the link parser is broken"
    problems = [p for p in map(link_problem, links) if p is not None]
    assert not problems, "\n".join(problems)


def test_every_image_exists() -> None:
    images = [link for link in relative_links(pages()) if link.image]
    assert images
    problems = [p for p in map(link_problem, images) if p is not None]
    assert not problems, "\n".join(problems)


def test_the_link_checker_finds_a_broken_link_and_anchor() -> None:
    page = DOCS / "commands.md"
    assert link_problem(Link(page, "no-such-page.md", image=False)) is not None
    assert link_problem(Link(page, "measuring.md#no-such-heading", image=False)) is not None
    assert link_problem(Link(page, "measuring.md#the-stored-value", image=False)) is None
    assert link_problem(Link(page, "../README.md#where-next", image=False)) is None
    assert relative_links([README]) and not any(
        "`" in link.target for link in relative_links([README]))


# -- synopses ---------------------------------------------------------------------------------

def test_every_synopsis_names_real_commands_and_flags() -> None:
    found = synopses(pages())
    assert len(found) >= 20, f"only {len(found)} synopses found: the parser is broken"
    fetch_help([(), *((c,) for c in top_level_commands())])
    problems = [f"{s.where}: {problem}\n    {s.text}"
                for s in found for problem in check_synopsis(s.text)]
    assert not problems, "\n".join(problems)


def test_every_inline_command_is_real() -> None:
    """`collector ...` in the prose's code spans too (a placeholder such as COMMAND aside)."""
    problems = []
    for path in pages():
        text = prose_keep_code(path.read_text(encoding="utf-8"))
        for span in re.findall(r"`((?:\.venv/bin/)?collector [^`]+)`", text):
            if not span.split()[1].isupper():
                problems += [f"{_name(path)}: `{span}`: {p}" for p in check_synopsis(span)]
    assert not problems, "\n".join(problems)


def test_the_synopsis_checker_can_fail() -> None:
    [problem] = check_synopsis("collector run-once --config FILE --no-such-flag")
    assert "--no-such-flag" in problem and "run-once" in problem
    assert check_synopsis("collector no-such-command --config FILE")
    assert check_synopsis("collector db migrate|no-such-action [--config FILE]")
    # A flag must be in the help of every alternative: --max-age-days is prune's only.
    [problem] = check_synopsis("collector envs list|prune [--max-age-days D]")
    assert "envs list" in problem
    assert not check_synopsis("collector envs prune [--env-cache DIR] [--max-age-days D]")


def test_the_synopsis_parser_reads_continuations_and_alternatives() -> None:
    block = ["collector db migrate|status [--config FILE]  # a comment --not-a-flag",
             "             [--local-store PATH]",
             "bash x.sh && .venv/bin/collector run-once \\",
             "--wide",
             "not a command --nope",
             "  indented, not a continuation --nope"]
    [db, run] = synopses_in(block, 1, "x.md")
    assert db.text == "collector db migrate|status [--config FILE] [--local-store PATH]"
    assert db.where == "x.md:1"
    assert run.text == ".venv/bin/collector run-once \\ --wide"
    parsed = parse(db.text)
    assert parsed.commands == [("db", "migrate"), ("db", "status")]
    assert parsed.flags == ["--config", "--local-store"] and not parsed.problems
    regressions = parse("collector regressions [list] [--kind K] [--all]")
    assert regressions.commands == [("regressions", "list")] and not regressions.problems


def test_every_command_and_action_is_documented() -> None:
    documented = [parse(s.text).commands for s in synopses(COMMAND_PAGES)]
    named = {command for commands in documented for command in commands}
    top = top_level_commands()
    fetch_help((c,) for c in top)
    missing = [c for c in top if not any(command[:1] == (c,) for command in named)]
    for command in top:
        group = help_text((command,))
        assert group is not None
        missing += [f"{command} {action}" for action in subcommands(group)
                    if (command, action) not in named]
    assert not missing, ("no synopsis in docs/commands.md or docs/ab-and-bisect.md for: "
                         + ", ".join(missing))


# -- exit codes -------------------------------------------------------------------------------

def test_the_exit_codes_page_is_the_code_table() -> None:
    rows = (DOCS / "exit-codes.md").read_text(encoding="utf-8").splitlines()
    for code in Exit:
        row = next((r for r in rows if r.startswith(f"| {code.value} |")), None)
        assert row is not None, f"docs/exit-codes.md has no row for {code.value}"
        assert MEANINGS[code] in row and code.name in row, row
    assert "(exit-codes.md)" in (DOCS / "commands.md").read_text(encoding="utf-8")


def test_exit_codes_are_tabled_once() -> None:
    tables = [_name(path) for path in pages() if re.search(
        r"(?m)^\|\s*(exit )?code\s*\|", prose_keep_code(path.read_text(encoding="utf-8")))]
    assert tables == ["docs/exit-codes.md"], tables
