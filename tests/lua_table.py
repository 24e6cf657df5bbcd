"""A test-only reader for the Lua that a ``.lrsmcol`` file is: ``name = { ... }`` built from tables, strings,
numbers and booleans (Lua 5.1 syntax, which Lightroom runs). Anything else is a ``LuaSyntaxError``, so a
file it reads is well-formed: braces balanced, every string closed, every escape valid."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_SIMPLE_ESCAPES = {"n": 10, "r": 13, "t": 9, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, '"': 34, "'": 39, "\n": 10}


class LuaSyntaxError(ValueError):
    pass


class _Reader:
    def __init__(self, text: str):
        self.text, self.at = text, 0

    def skip_space(self) -> None:
        while self.at < len(self.text):
            if self.text[self.at] in " \t\r\n":
                self.at += 1
            elif self.text.startswith("--", self.at):
                end = self.text.find("\n", self.at)
                self.at = len(self.text) if end < 0 else end + 1
            else:
                return

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.at : self.at + 1]

    def expect(self, symbol: str) -> None:
        if self.peek() != symbol:
            raise LuaSyntaxError(f"expected {symbol!r} at {self.at}: {self.text[self.at : self.at + 20]!r}")
        self.at += 1

    def name(self) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.at)
        if not match:
            raise LuaSyntaxError(f"expected a name at {self.at}")
        self.at = match.end()
        return match.group()

    def string(self) -> str:
        self.expect('"')
        raw = bytearray()
        while True:
            if self.at >= len(self.text):
                raise LuaSyntaxError("unfinished string")
            char = self.text[self.at]
            self.at += 1
            if char == '"':
                return raw.decode("utf-8", "surrogateescape")
            if char == "\n":
                raise LuaSyntaxError("unfinished string (a line break inside it)")
            if char != "\\":
                raw += char.encode("utf-8")
                continue
            escape = self.text[self.at : self.at + 1]
            digits = re.match(r"\d{1,3}", self.text[self.at : self.at + 3])
            if digits:
                value = int(digits.group())
                if value > 255:
                    raise LuaSyntaxError(f"escape \\{digits.group()} is too large")
                raw.append(value)
                self.at += len(digits.group())
            elif escape in _SIMPLE_ESCAPES:
                raw.append(_SIMPLE_ESCAPES[escape])
                self.at += 1
            else:
                raise LuaSyntaxError(f"invalid escape \\{escape!r} at {self.at}")

    def value(self):
        head = self.peek()
        if head == "{":
            return self.table()
        if head == '"':
            return self.string()
        number = _NUMBER.match(self.text, self.at)
        if number:
            self.at = number.end()
            return float(number.group()) if "." in number.group() else int(number.group())
        word = self.name()
        if word in ("true", "false", "nil"):
            return {"true": True, "false": False, "nil": None}[word]
        raise LuaSyntaxError(f"unexpected {word!r}")

    def table(self) -> dict:
        """Named fields by name, positional ones under 1, 2, ... as Lua numbers them."""
        self.expect("{")
        fields, position = {}, 1
        while self.peek() != "}":
            if not self.peek():
                raise LuaSyntaxError("unbalanced braces: the table never ends")
            start = self.at
            match = _NAME.match(self.text, self.at)
            after = self.text[match.end() :].lstrip(" \t\r\n") if match else ""
            if match and after.startswith("=") and not after.startswith("=="):
                key = self.name()
                self.expect("=")
                fields[key] = self.value()
            else:
                self.at = start
                fields[position] = self.value()
                position += 1
            if self.peek() in (",", ";"):
                self.at += 1
            elif self.peek() != "}":
                raise LuaSyntaxError(f"expected ',' or '}}' at {self.at}")
        self.expect("}")
        return fields


def read_assignment(text: str) -> tuple[str, dict]:
    """``name = { ... }`` (nothing else in the text) as (name, table)."""
    reader = _Reader(text)
    name = reader.name()
    reader.expect("=")
    table = reader.table()
    if reader.peek():
        raise LuaSyntaxError(f"text after the table at {reader.at}")
    return name, table
