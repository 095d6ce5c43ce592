"""YAML from users' files (``data.yaml``, ``--manual-weights``), with a bound on what a small file can expand to.

``yaml.safe_load`` builds an alias as a reference to the anchored value, so a
"billion laughs" file of a few hundred bytes loads as a small graph of
shared lists; anything that then walks it (``str()``, a loop over the
names, an error message's ``repr()``) walks 10**9 values and more. Here the
composed node graph is measured before any value is built: a document whose
aliases expand past :data:`MAX_VALUES` values, or that nests deeper than
Python can parse, is refused with :class:`YamlDocError`.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 1_000_000  # values a document may expand to: 100x the largest data.yaml a 10,000-class set writes

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: 10x faster


class YamlDocError(ValueError):
    """A YAML document that cannot be read, or expands past the bound."""


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Values the node stands for once every alias is expanded, counted without expanding (stops past ``limit``)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if id(node) in on_path:
            raise YamlDocError("an alias refers to a value that contains it (a recursive document)")
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YamlDocError("an alias refers to a value that contains it (a recursive document)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load(text: str, limit: int = MAX_VALUES) -> Any:
    """The document's value, as ``yaml.safe_load`` gives it, once its expanded size is known to be within ``limit``.

    Raises:
        YamlDocError: a YAML error, a document nested too deep, or one that expands past ``limit`` values.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, limit)
        if size > limit:
            raise YamlDocError(f"its aliases expand to more than {limit:,} values (a YAML alias bomb?)")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlDocError("unreadable YAML: " + " ".join(str(exc).split())) from None  # one line
    except RecursionError:
        raise YamlDocError("nested too deep to read") from None
    finally:
        loader.dispose()
