"""The members of a large top-level JSON object, read as a stream with the ``json`` module's own C scanner.

A COCO file is one object whose ``images`` and ``annotations`` arrays hold
almost all of it. :class:`Members` walks the object's members and decodes
each element of the arrays it is asked to stream with
``JSONDecoder.raw_decode`` (the C scanner ``json.load`` itself uses), from a
buffer of a few MiB. So one element is in memory at a time, and the parse
runs at ``json.load``'s speed: streaming parsers that emit an event per
token to Python (ijson, which this reader used before) took twice as long.

The decoder reads ``NaN`` and ``Infinity`` as Python's ``json`` writes them:
a NaN box becomes a dropped box with a reason, not a failed file.

The bytes are UTF-8 (an optional BOM is skipped), as RFC 8259 requires.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

_WS = re.compile(r"[ \t\n\r]*")
_SPACE = " \t\n\r"
CHUNK_CHARS = 1 << 22  # 4 Mi characters a read: few Python steps per MB, little memory
#: A decode error this many characters before the buffer's end cannot be caused by the cut: the JSON is bad.
_CUT_REACH = 32
#: An array's elements are read on from the file when fewer characters than this are left: an element cut
#: by the buffer's end raises a decode error, whose message counts the lines of the whole buffer (about 2 ms).
_REFILL_AT = 1 << 16


class JsonStreamError(ValueError):
    """The text is not JSON; the message says where (character offset) and what."""


class Members:
    """The top-level members of the JSON object in ``f``, as ``(key, index, value)`` events.

    A member whose key is in ``streamed`` and whose value is an array gives one
    event per element, with its index (so an empty one gives none). Every other
    member gives one event with index ``None`` and the whole value. ``names``
    lists the member names read so far.

    Raises:
        JsonStreamError: the text is not one JSON object (the message gives the offset).
    """

    def __init__(self, f: BinaryIO, streamed: frozenset[str] = frozenset(), chunk: int = CHUNK_CHARS) -> None:
        self.f, self.streamed, self.chunk = f, streamed, chunk
        self.text, self.pos, self.done, self.consumed = "", 0, False, 0
        self.names: list[str] = []
        self.bytes = 0  # read so far
        self.utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self.scan = json.JSONDecoder().raw_decode  # the C scanner: (value, end) from a string and a start

    def _more(self, at_least: int = 0) -> None:
        """Drop what was read, then append at least ``max(chunk, at_least)`` more characters (or reach the end)."""
        self.consumed += self.pos
        text = self.text[self.pos :]
        want = max(self.chunk, at_least)
        parts = [text]
        while not self.done and sum(map(len, parts)) - len(text) < want:
            data = self.f.read(want)
            try:
                parts.append(self.utf8.decode(data, final=not data))
            except UnicodeDecodeError as exc:
                raise JsonStreamError(f"not UTF-8 near byte {self.bytes + exc.start}: {exc.reason}") from None
            self.bytes += len(data)
            self.done = not data
        self.text, self.pos = "".join(parts), 0

    def _skip_ws(self) -> str:
        """The next character after whitespace, or '' at the end."""
        while True:
            self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]  # always matches
            if self.pos < len(self.text):
                return self.text[self.pos]
            if self.done:
                return ""
            self._more()

    def _expect(self, chars: str, where: str) -> str:
        c = self._skip_ws()
        if not c or c not in chars:
            raise self._error(f"expected {' or '.join(map(repr, chars))} {where}, found {c or 'the end'!r}")
        self.pos += 1
        return c

    def _value(self) -> Any:
        """Decode the value after the current position, reading more while it may continue past the buffer."""
        self._skip_ws()
        while True:
            try:
                value, end = self.scan(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # where the text stops being JSON: at a cut ('tr' of 'true', an open string) or bad text
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.text) - _CUT_REACH
                if not self.done and cut:
                    self._more(at_least=len(self.text) - self.pos)  # doubles: a long value is read in O(its size)
                    continue
                raise self._error(exc.msg.removesuffix(" at"), exc.pos) from None
            except RecursionError:  # the C scanner recurses once per level: 100,000 nested arrays
                raise self._error("a value nested too deep to read") from None
            if end > len(self.text) - _CUT_REACH and not self.done:  # a number may go on: '-0.' of '-0.5'
                self._more()
                continue
            self.pos = end
            return value

    def _error(self, what: str, pos: int | None = None) -> JsonStreamError:
        return JsonStreamError(f"{what} at character {self.consumed + (self.pos if pos is None else pos)}")

    def __iter__(self) -> Iterator[tuple[str, int | None, Any]]:
        self._more()
        self._expect("{", "at the start")
        if self._skip_ws() == "}":
            self.pos += 1
        else:
            while True:
                if self._skip_ws() != '"':
                    raise self._error("expected a member name in double quotes")
                key = self._value()
                self.names.append(key)
                self._expect(":", f"after the member name {key!r}")
                if key in self.streamed and self._skip_ws() == "[":
                    self.pos += 1
                    yield from self._elements(key)
                else:
                    yield key, None, self._value()
                if self._expect(",}", f"after the member {key!r}") == "}":
                    break
        if self._skip_ws():
            raise self._error("unexpected text after the top-level object")

    def _elements(self, key: str) -> Iterator[tuple[str, int, Any]]:
        if self._skip_ws() == "]":
            self.pos += 1
            return
        index = 0
        ws, scan = _WS.match, self.scan
        while True:
            # the fast path inlined: an element and its comma inside the buffer (the regex only where there is space)
            text, pos = self.text, self.pos
            if len(text) - pos < _REFILL_AT and not self.done:  # read on before an element is cut (see _REFILL_AT)
                self._more()
                text, pos = self.text, self.pos
            try:
                if text[pos] in _SPACE:
                    pos = ws(text, pos).end()  # type: ignore[union-attr]
                value, end = scan(text, pos)
                after = end if text[end] not in _SPACE else ws(text, end).end()  # type: ignore[union-attr]
                sep = text[after] if end <= len(text) - _CUT_REACH else ""  # past the cut reach: the careful path
            except (json.JSONDecodeError, IndexError, RecursionError):
                sep = ""
            if sep:
                self.pos = after + 1
            else:  # at the buffer's end or bad: the careful path
                value = self._value()
                sep = self._skip_ws()
                self.pos += 1
            yield key, index, value
            index += 1
            if sep == "]":
                return
            if sep != ",":
                self.pos -= 1
                raise self._error(f"expected ',' or ']' after {key}[{index - 1}], found {sep or 'the end'!r}")
