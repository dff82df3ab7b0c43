"""The docs stay true, mechanically: every command README.md and docs/ show parses with the
real argument parser of the module it runs, every `make` target they name exists, the
parameter defaults of docs/deploy.md are template.yaml's, and every relative link resolves.

A command is checked by running its module as ``__main__`` with argparse stopped right after
parsing (nothing else runs): a removed flag or subcommand fails here, with the file and line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcloud.cloudformation import yaml_loader

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    REPO / "README.md",
    REPO / "localcloud" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
]
COMMAND = re.compile(
    r"(?:^|\s)(?:\.venv/bin/)?python3? -m ((?:localcloud|training|bench|notebooks)\S*)(.*)"
)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
MAKE = re.compile(r"(?:^|[\s(;&|])make ([a-z][\w-]*)(?=[\s).,;]|$)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


class Parsed(Exception):
    """argparse finished parsing: the command line is valid."""


def _commands(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each shell line in a fenced block and each inline code span (which may
    wrap over two lines), continuations joined."""
    text = path.read_text()
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        lines = block.group(1).replace("\\\n", " ").split("\n")
        for offset, line in enumerate(lines):
            yield first + offset, line
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in INLINE.finditer(prose):
        yield text.count("\n", 0, span.start()) + 1, " ".join(span.group(1).split())


def _words(args: str) -> list[str]:
    """The command's words up to a comment, a pipe, a redirect or the prose after it;
    placeholders the docs write as [OPTIONAL] stay words; "..." ends the checked part."""
    words: list[str] = []
    args = re.sub(r"<[^>]*>", "1", args)  # "<free port>": a placeholder (1 fits int and str)
    for word in shlex.split(args, comments=True, posix=True):
        if word == "..." and words and words[-1].startswith("--"):
            word = "VALUE"  # "--model-dir ...": an elided value
        if word in ("|", "&&", ";", ">", "...") or word.startswith(("(", "──")):
            break
        if word.strip("[]"):
            words.append(word.strip("[]"))
    return words


def mentions() -> Iterator[tuple[str, int, str, list[str]]]:
    """(file, line, module, argv) of every documented command with arguments (a bare
    ``python -m localcloud`` in prose names the tool, not a command line)."""
    for path in DOCS:
        for line, text in _commands(path):
            found = COMMAND.search(text)
            if not found or found.group(1).endswith("."):  # "bench.*": a family
                continue
            words = _words(found.group(2))
            if words:
                yield path.name, line, found.group(1).rstrip(".,;:"), words


def run_parser_only(module: str, argv: list[str]) -> str | None:
    """None if ``python -m module argv`` parses; else what argparse said."""
    depth = 0
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        nonlocal depth
        depth += 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            depth -= 1
        if depth == 0:  # the outermost parser (a subparser's parse is nested)
            if result[1]:
                self.error(f"unrecognized arguments: {' '.join(result[1])}")
            raise Parsed
        return result

    err = io.StringIO()
    saved = sys.argv
    argparse.ArgumentParser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    sys.argv = [module, *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except Parsed:
        return None
    except SystemExit as exc:
        return None if exc.code in (0, None) else err.getvalue().strip() or f"exit {exc.code}"
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]
        sys.argv = saved
    return "the module did not parse a command line"


def test_every_documented_command_parses() -> None:
    wrong = []
    seen = set()
    for name, line, module, argv in mentions():
        if (module, tuple(argv)) in seen:
            continue
        seen.add((module, tuple(argv)))
        problem = run_parser_only(module, argv)
        if problem:
            wrong.append(f"{name}:{line}: python -m {module} {' '.join(argv)}: {problem}")
    assert len(seen) > 15, "the pattern no longer finds the docs' commands"
    assert wrong == []


def test_every_documented_make_target_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    wrong = [
        f"{path.name}:{line}: make {target}"
        for path in DOCS
        for line, code in _commands(path)  # code only: "make" in prose is a verb
        for target in MAKE.findall(code)
        if target not in targets
    ]
    assert wrong == []


def _table_defaults(text: str) -> dict[str, str]:
    """README's "| `Name` / `Other` | `a` / `b` |" rows, as {name: default}."""
    defaults = {}
    for row in re.findall(r"^\| (`\w+`(?: / `\w+`)*) \| ([^|]+) \|", text, flags=re.M):
        names = re.findall(r"`(\w+)`", row[0])
        values = [v.strip().strip("`") for v in row[1].split(" / ")]
        if len(values) == len(names) and all("`" in row[1] or v == "(empty)" for v in values):
            defaults.update(zip(names, values, strict=True))
    return defaults


def test_the_documented_parameter_defaults_are_the_templates() -> None:
    parameters = yaml_loader.load(REPO / "template.yaml")["Parameters"]
    deploy = (REPO / "docs" / "deploy.md").read_text()
    table = deploy[deploy.index("\n## Parameters") :]
    documented = _table_defaults(table[: table.index("\n#", 2)])
    assert len(documented) > 20, "the parameter table of docs/deploy.md was not found"
    wrong = {}
    for name, default in documented.items():
        actual = str(parameters[name].get("Default", "")) if name in parameters else None
        expected = "" if default == "(empty)" else default
        if actual != expected:
            wrong[name] = (default, actual)
    assert wrong == {}, "docs/deploy.md default vs template.yaml"


def _anchors(path: Path) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        anchors.add(slug.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    wrong = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        if not resolved.exists():
            wrong.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            wrong.append(f"{target}: no heading #{anchor}")
    assert wrong == []


def test_the_train_py_flags_listed_are_the_parsers() -> None:
    from train import get_args_parser  # training/ is on the tests' path

    text = (REPO / "docs" / "architecture.md").read_text()
    listed = text[text.index("Flags: `") : text.index("`", text.index("Flags: `") + 8)]
    documented = set(re.findall(r"--[a-z][\w-]*", listed))
    actual = {
        option
        for action in get_args_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and "_" not in option and option != "--help"
    }
    assert documented == actual


def test_the_containers_named_are_the_templates() -> None:
    template = (REPO / "template.yaml").read_text()
    text = (REPO / "docs" / "environment.md").read_text()
    for kind, what in (("training", "training container"), ("inference", "inference container")):
        version, python = re.search(
            rf"pytorch-{kind}:(\d+\.\d+)\.\d+-cpu-py3(\d+)", template
        ).groups()  # type: ignore[union-attr]
        assert re.search(rf"{what} \(PyTorch {version}, Python 3\.{python}\)", text), kind
