"""Label maps in the TF Object Detection API's ``label_map.pbtxt`` format.

``item { id: 1 name: 'cat' }``; ids start at 1 (0 is background). The reader
is a small tokenizer for this one message shape (the TF OD API's proto is not
a dependency); string escapes are decoded with ``codecs.escape_decode``, never
evaluated.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Iterable, Iterator


class LabelMapError(ValueError):
    """A label map that is malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Class names in id order; ``names[i]`` has id ``i + 1``."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in self.names:
            if not isinstance(name, str) or not name:
                raise LabelMapError(f"class name {name!r} is empty or not a string")
            if name in seen:
                raise LabelMapError(f"class name {name!r} appears twice in the label map")
            seen.add(name)

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelMap:
        return cls(tuple(names))

    def id_of(self, name: str) -> int | None:
        try:
            return self.names.index(name) + 1
        except ValueError:
            return None

    def ids(self) -> dict[str, int]:
        return {name: i + 1 for i, name in enumerate(self.names)}

    def name_of(self, label: int) -> str:
        if not 1 <= label <= len(self.names):
            raise LabelMapError(f"label id {label} is outside 1..{len(self.names)}")
        return self.names[label - 1]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(enumerate(self.names, start=1))

    def to_pbtxt(self) -> str:
        """Render in the TF OD API format (ids from 1, stable order)."""
        return "".join(f"item {{\n  id: {i}\n  name: '{_escape(name)}'\n}}\n" for i, name in self)

    @classmethod
    def from_pbtxt(cls, text: str, source: str = "label_map.pbtxt") -> LabelMap:
        """Parse the TF OD API format; ids may be sparse but must be >= 1 and unique.

        Gaps in ids are refused, because label ids index the class axis of
        the model's logits; a map with holes is almost always a mistake.
        """
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
            if item_id in items:
                raise LabelMapError(f"{source}: id {item_id} appears twice")
            items[item_id] = fields["name"]
        if not items:
            raise LabelMapError(f"{source}: no items")
        expected = list(range(1, len(items) + 1))
        if sorted(items) != expected:
            raise LabelMapError(f"{source}: ids {sorted(items)} are not 1..{len(items)}")
        return cls(tuple(items[i] for i in expected))


def _escape(name: str) -> str:
    return (
        name.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
    )


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
            yield "str", codecs.escape_decode(raw)[0].decode("utf-8")  # type: ignore[attr-defined]
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
