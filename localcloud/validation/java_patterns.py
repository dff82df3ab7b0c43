"""botocore's ``pattern`` constraints, read as AWS's (Java) servers read them.

The service models carry the patterns of AWS's own models: Java regular expressions that
the server matches against the *whole* value (``Matcher.matches()``), so an unanchored
pattern such as ``[a-z]+`` still refuses ``"a b"``. They are translated once to the
``regex`` package's syntax (which knows ``\\p{L}``, ``\\p{N}``, ... as Java does) and
matched with ``fullmatch``. What differs between the two dialects, and how each case is
read here:

- ``.`` outside a class: Java's excludes every line terminator (``\\n``, ``\\r``,
  ``\\u0085``, ``\\u2028``, ``\\u2029``), Python's only ``\\n``: it becomes that class.
- ``\\d``, ``\\w``, ``\\s`` (and ``\\D``, ``\\W``, ``\\S``) are ASCII in Java: written out as
  ASCII classes (``regex.ASCII`` would make ``\\p{L}`` ASCII too). Inside a class only the
  positive ones are (a negated one there stays Unicode).
- Java's POSIX classes are ASCII (``\\p{Print}`` is ``[\\x20-\\x7E]``, ``\\p{Alnum}``
  ``[a-zA-Z0-9]``, ``\\p{ASCII}`` ``[\\x00-\\x7F]``, ...): written out as those ranges,
  where ``regex`` would read them as Unicode properties (Application Auto Scaling's
  ``PolicyName``, SageMaker Runtime's headers, Step Functions' ``TraceHeader``).
- A quantified anchor, as in SageMaker's ``CustomerMetadataValue`` (and ``...Key``)
  ``([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,256}`` (a mangled ``^(...)$`` whose length bound
  became a quantifier of ``$``): the quantifier is dropped, ``$`` is kept; the shape's
  ``min``/``max`` carry the length (1-256) as separate constraints.
- ``\\z`` (end of input) is ``regex``'s ``\\Z``; ``\\A`` is the same in both (SageMaker
  Runtime's ``InferenceId``, ``TargetModelHeader``).
- A UTF-16 surrogate pair written as two ``\\u`` escapes (``\\uD800\\uDC00-\\uDBFF\\uDFFF``
  in XML-character classes) is the code point it encodes (here U+10000-U+10FFFF): Python
  strings hold code points, not UTF-16 units (Application Auto Scaling's ``ResourceId`` and
  metric names, SageMaker's Athena/Glue names).

A pattern that still does not compile is reported once (``uncompilable``, logged when the
local cloud starts) and that one check is not made.
"""

from __future__ import annotations

import logging
from functools import cache

import regex

log = logging.getLogger("localcloud.validation")

# Java's POSIX character classes (US-ASCII only, as Java reads them without the
# UNICODE_CHARACTER_CLASS flag), as the contents of a character class.
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7F",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": "!-/:-@\\[-`{-~",
    "Graph": "!-~",
    "Print": " -~",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1F\\x7F",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0B\\f\\r",
}
_JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"
# Java's predefined classes (ASCII), as class contents.
_PREDEFINED = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\x0B\\f\\r"}
_QUANTIFIER = regex.compile(r"\{\d+(?:,\d*)?\}[?+]?|[*+?][?+]?")
_SURROGATE_PAIR = regex.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", regex.I)


def _code_point(match: regex.Match[str]) -> str:
    high, low = int(match.group(1), 16), int(match.group(2), 16)
    return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"


def translate(pattern: str) -> str:
    """The ``regex`` package's spelling of a Java pattern (see the module's notes)."""
    text = _SURROGATE_PAIR.sub(_code_point, pattern)
    out: list[str] = []
    depth = 0  # inside a character class (Java allows nested ones)
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            escape = text[i : i + 2]
            posix = regex.match(r"\\p\{(\w+)\}", text[i:])
            if posix and posix.group(1) in _POSIX:
                ranges = _POSIX[posix.group(1)]
                out.append(ranges if depth else f"[{ranges}]")
                i += len(posix.group(0))
                continue
            letter = escape[1]
            if letter in _PREDEFINED:
                out.append(_PREDEFINED[letter] if depth else f"[{_PREDEFINED[letter]}]")
            elif letter.lower() in _PREDEFINED and not depth:
                out.append(f"[^{_PREDEFINED[letter.lower()]}]")
            else:
                out.append("\\Z" if escape == "\\z" else escape)
            i += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif char == "." and not depth:
            out.append(_JAVA_DOT)
            i += 1
            continue
        elif char == "$" and not depth:
            out.append("$")
            quantifier = _QUANTIFIER.match(text, i + 1)
            i = quantifier.end() if quantifier else i + 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


class PatternError(Exception):
    """A model pattern that does not compile, even translated."""


@cache
def compiled(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(translate(pattern), regex.V0)
    except regex.error as exc:
        raise PatternError(f"{pattern!r}: {exc}") from None


def matches(pattern: str, value: str) -> bool | None:
    """Whether the whole value matches; None when the pattern cannot be compiled."""
    try:
        return compiled(pattern).fullmatch(value) is not None
    except PatternError:
        return None


def uncompilable(patterns: dict[str, str]) -> dict[str, str]:
    """Of ``{shape name: pattern}``, the shapes whose pattern does not compile, with why."""
    failed: dict[str, str] = {}
    for shape, pattern in patterns.items():
        try:
            compiled(pattern)
        except PatternError as exc:
            failed[shape] = str(exc)
    return failed
