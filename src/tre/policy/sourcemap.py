"""Line numbers for locations in a YAML document, so every error can point into the file.

PyYAML's composed node tree keeps each node's position; a location such as
('permits', 0, 'expiry') is followed as far as the document goes and the line of
the deepest node reached is returned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import yaml


class SourceMap:
    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    @classmethod
    def from_text(cls, text: str) -> SourceMap:
        return cls(yaml.compose(text, Loader=yaml.SafeLoader))

    def line(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node along `loc`; None for an empty document."""
        node = self._root
        if node is None:
            return None
        found = node
        for part in loc:
            child = _child(found, part)
            if child is None:
                break
            found = child
        return found.start_mark.line + 1

    def duplicate_keys(self) -> Iterator[tuple[tuple[str | int, ...], str, int]]:
        """Yield (location of the mapping, key, line) for each repeated mapping key.

        PyYAML keeps the last of repeated keys without a word; in a policy that
        silently drops a setting, so validation reports it.
        """
        yield from _duplicates(self._root, ())


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found: yaml.Node = value
                return found
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        child: yaml.Node = node.value[part]
        return child
    return None


def _duplicates(
    node: yaml.Node | None, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str, int]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else repr(key)
            if name in seen:
                yield loc, name, key.start_mark.line + 1
            seen.add(name)
            yield from _duplicates(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, (*loc, i))
