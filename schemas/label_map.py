"""Label maps in the TF Object Detection API's ``label_map.pbtxt`` format.

``item { id: 1 name: 'cat' }``; ids start at 1 (0 is background). The reader
is a small tokenizer for this one message shape (the TF OD API's proto is not
a dependency); string escapes are decoded with ``codecs.escape_decode``, never
evaluated.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator, Mapping

from google.protobuf import text_encoding

MAX_ID = 2**31 - 1  # StringIntLabelMapItem.id is an int32


class LabelMapError(ValueError):
    """A label map that is malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Class names and their ids, in id order.

    ``ids`` defaults to 1..N. A label map read from a file keeps its ids,
    gaps included (the TF OD API's ``mscoco_label_map.pbtxt`` has 80 classes
    with ids up to 90): a model's class axis then has ``max_id`` entries.
    """

    names: tuple[str, ...]
    ids_in_order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in self.names:
            if not isinstance(name, str) or not name:
                raise LabelMapError(f"class name {name!r} is empty or not a string")
            if name in seen:
                raise LabelMapError(f"class name {name!r} appears twice in the label map")
            seen.add(name)
        if not self.ids_in_order:
            object.__setattr__(self, "ids_in_order", tuple(range(1, len(self.names) + 1)))
        ids = self.ids_in_order
        if len(ids) != len(self.names):
            raise LabelMapError(f"{len(ids)} ids for {len(self.names)} names")
        if any(not isinstance(i, int) or i < 1 for i in ids) or list(ids) != sorted(set(ids)):
            raise LabelMapError(f"ids {_span(ids)} must be distinct integers >= 1 in increasing order")
        if ids and ids[-1] > MAX_ID:
            raise LabelMapError(f"id {ids[-1]} is beyond the TF OD API label map's int32 ids (at most {MAX_ID})")

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelMap:
        return cls(tuple(names))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, str]]) -> LabelMap:
        """From (id, name) pairs in any order."""
        ordered = sorted(pairs)
        return cls(tuple(n for _, n in ordered), tuple(i for i, _ in ordered))

    def id_of(self, name: str) -> int | None:
        return self.lookup.get(name)

    @functools.cached_property
    def lookup(self) -> Mapping[str, int]:
        """name -> id, built once (readers look up every box: rebuilt per call it cost 144 us at 1,203 classes)."""
        return dict(zip(self.names, self.ids_in_order))  # typed read-only; a plain dict so a label map pickles to workers

    @functools.cached_property
    def _names(self) -> dict[int, str]:
        return dict(zip(self.ids_in_order, self.names))

    def name_of(self, label: int) -> str:
        name = self._names.get(label)
        if name is not None:
            return name
        raise LabelMapError(f"label id {label} is not in the label map (ids {_span(self.ids_in_order)})")

    @property
    def max_id(self) -> int:
        """The largest id: the size of a model's class axis (ids start at 1)."""
        return self.ids_in_order[-1] if self.ids_in_order else 0

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(zip(self.ids_in_order, self.names))

    def to_pbtxt(self) -> str:
        """Render in the TF OD API format (ids from 1, stable order)."""
        return "".join(f"item {{\n  id: {i}\n  name: '{_escape(name)}'\n}}\n" for i, name in self)

    @classmethod
    def from_pbtxt(cls, text: str, source: str = "label_map.pbtxt") -> LabelMap:
        """Parse the TF OD API format; ids must be >= 1 and unique, and are kept as written (gaps too)."""
        items: dict[int, str] = {}
        for fields in _items(text, source):
            if "id" not in fields or "name" not in fields:
                raise LabelMapError(f"{source}: item {fields} lacks id or name")
            try:
                item_id = int(fields["id"])
            except ValueError:
                raise LabelMapError(f"{source}: id {fields['id']!r} is not an integer") from None
            if item_id < 1:
                raise LabelMapError(f"{source}: id {item_id} < 1 (0 is reserved for background)")
            if item_id > MAX_ID:
                raise LabelMapError(f"{source}: id {item_id} is beyond the TF OD API label map's int32 ids (at most {MAX_ID})")
            if item_id in items:
                raise LabelMapError(f"{source}: id {item_id} appears twice")
            items[item_id] = fields["name"]
        if not items:
            raise LabelMapError(f"{source}: no items")
        names = [items[i] for i in sorted(items)]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise LabelMapError(f"{source}: names {twice} have more than one id")
        return cls.from_pairs((i, items[i]) for i in items)


def _escape(name: str) -> str:
    # protobuf's own text-format escaping: every control character, both quotes and the backslash
    # (a raw carriage return made the TF OD API's loader fail with "String missing ending quote")
    return text_encoding.CEscape(name, as_utf8=True)


_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
    r"""|(?P<word>[A-Za-z_][A-Za-z0-9_]*|-?\d+)|(?P<punct>[{}:])"""
)


def _tokens(text: str, source: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise LabelMapError(f"{source}:{line}: unexpected text {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")[1:-1].encode("utf-8")
            try:
                yield "str", codecs.escape_decode(raw)[0].decode("utf-8")  # type: ignore[attr-defined]
            except (ValueError, UnicodeDecodeError) as exc:  # a bad \x escape, or escapes that make no UTF-8
                line = text.count("\n", 0, pos) + 1
                raise LabelMapError(f"{source}:{line}: string {m.group('str')[:40]!r} cannot be read: {exc}") from None
        elif m.group("word") is not None:
            yield "word", m.group("word")
        elif m.group("punct") is not None:
            yield "punct", m.group("punct")


def _items(text: str, source: str) -> Iterator[dict[str, str]]:
    tokens = _tokens(text, source)
    for kind, value in tokens:
        if (kind, value) != ("word", "item"):
            raise LabelMapError(f"{source}: expected 'item', found {value!r}")
        if next(tokens, None) != ("punct", "{"):
            raise LabelMapError(f"{source}: expected '{{' after 'item'")
        fields: dict[str, str] = {}
        while True:
            tok = next(tokens, None)
            if tok is None:
                raise LabelMapError(f"{source}: unterminated item {fields}")
            if tok == ("punct", "}"):
                break
            key = tok[1]
            if next(tokens, None) != ("punct", ":"):
                raise LabelMapError(f"{source}: expected ':' after {key!r}")
            val = next(tokens, None)
            if val is None or val[0] == "punct":
                raise LabelMapError(f"{source}: field {key!r} has no value")
            fields[key] = val[1]
        yield fields


def _span(ids: tuple[int, ...]) -> str:
    if ids == tuple(range(1, len(ids) + 1)):
        return f"1..{len(ids)}"
    return ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
