"""Text that medinfer.io hands out — paths, reasons, messages — as strings that can be printed and written
as UTF-8 JSON whatever the file names hold, and the wording shared by its messages."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` as it can be printed and written as UTF-8 JSON: unchanged when printable, else with each
    character that is not printable escaped. A byte of a file name that is not UTF-8 (which Python holds as
    a surrogate escape, U+DC80..U+DCFF) becomes ``\\xNN``, as ``os.fsencode(name).decode("utf-8",
    "backslashreplace")`` writes it; a character that is not printable (newline, ESC, U+202E, a lone
    surrogate ...) becomes ``\\uNNNN`` (``\\UNNNNNNNN`` beyond the BMP), so the two never collide.
    Backslashes are kept, so an escaped name is ambiguous only with a name that spells out such an escape."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def printable_value(value):
    """``value`` with every string in it, keys included, made :func:`printable` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_value(k): printable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(printable_value(v) for v in value)
    return value


def printable_lines(text: str) -> str:
    """:func:`printable` line by line: a message keeps its line breaks."""
    return "\n".join(printable(line) for line in text.split("\n"))


def plural(n: int, word: str) -> str:
    """``"1 slice"``, ``"3 slices"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
