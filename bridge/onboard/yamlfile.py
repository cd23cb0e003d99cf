"""Round-trip YAML: edit a Rasa file keeping its comments, quoting, key order and layout."""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken

from bridge.onboard.errors import ProjectError

# Block sequences under a key are written either flush with it or indented by two; ruamel uses
# one style per file, so each file gets the style that rewrites the fewest of its lines.
_STYLES = ((2, 2, 0), (2, 4, 2))


def _yaml(style: tuple[int, int, int]) -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line of the user's
    mapping, sequence, offset = style
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.representer.add_representer(_Null, _represent_null)
    return yaml


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _changed_lines(a: str, b: str) -> int:
    diff = difflib.ndiff(a.splitlines(), b.splitlines())
    return sum(1 for line in diff if line.startswith(("- ", "+ ")))


@dataclass
class YamlFile:
    """A YAML file as a round-trip document; `data` is a mapping (empty for a new file or one
    holding only comments)."""

    path: Path
    original: str
    data: CommentedMap
    yaml: YAML
    commented_only: bool

    @classmethod
    def load(cls, path: Path, label: str) -> YamlFile:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return cls.parse(path, text, label)

    @classmethod
    def parse(cls, path: Path, text: str, label: str) -> YamlFile:
        try:
            data = _yaml(_STYLES[0]).load(text)
        except YAMLError as exc:
            raise ProjectError(f"{label} is not valid YAML: {exc}".splitlines()[0]) from None
        if data is None:
            return cls(path, text, CommentedMap(), _yaml(_STYLES[0]), commented_only=True)
        if not isinstance(data, CommentedMap):
            raise ProjectError(f"{label} is not a YAML mapping of keys to values")
        style = min(
            _STYLES, key=lambda s: _changed_lines(text, _dump(_yaml(s), _yaml(s).load(text)))
        )
        yaml = _yaml(style)
        return cls(path, text, yaml.load(text), yaml, commented_only=False)

    def text(self) -> str:
        """The document as it would be written now."""
        if not self.commented_only:
            return _tidy(_dump(self.yaml, self.data), self.original)
        if not self.data:
            return self.original
        # A file of comments only (e.g. rasa init's endpoints.yml): keep them, add below.
        head = self.original.rstrip("\n")
        return _tidy((head + "\n\n" if head else "") + _dump(self.yaml, self.data), self.original)

    @property
    def changed(self) -> bool:
        return self.text() != self.original


def _tidy(text: str, original: str) -> str:
    """No blank lines at the end that the file did not have (a fragment's spacing)."""
    if text.endswith("\n\n") and not original.endswith("\n\n"):
        return text.rstrip("\n") + "\n"
    return text


def load_plain(path: Path, label: str) -> Any:
    """Read-only parse (for files that are looked at, never written)."""
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        raise ProjectError(f"{label} is not valid YAML: {exc}".splitlines()[0]) from None


class _Null:
    """A null written as `null` (ruamel writes None as nothing: fine for `rest:`, unclear in
    `value: null`); the bot's own nulls stay as they were."""


def _represent_null(representer: Any, _data: _Null) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def explicit_nulls(node: Any) -> Any:
    """`node` (copied from a fragment) with its null values written out as `null`."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _Null() if value is None else explicit_nulls(value)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            node[i] = _Null() if value is None else explicit_nulls(value)
    return node


def _last_slot(node: Any) -> tuple[Any, Any, int] | None:
    """Where ruamel keeps the comment after a collection's last line: (container, key, slot)."""
    found: tuple[Any, Any, int] | None = None
    while isinstance(node, (CommentedMap, CommentedSeq)) and len(node):
        if isinstance(node, CommentedMap):
            key: Any = list(node)[-1]
            found, node = (node, key, 2), node[key]
        else:
            found, node = (node, len(node) - 1, 0), node[-1]
    return found


def _trailer_token(node: Any) -> Any:
    slot = _last_slot(node)
    if slot is None:
        return None
    container, key, index = slot
    return (container.ca.items.get(key) or [None] * 4)[index]


def _cut_trailer(node: Any) -> str:
    """Remove and return what follows the end of `node`'s last line (blank lines, comments)."""
    token = _trailer_token(node)
    if token is None or "\n" not in token.value:
        return ""
    cut = token.value.index("\n") + 1
    trailer: str = token.value[cut:]
    token.value = token.value[:cut]
    return trailer


def _add_trailer(node: Any, trailer: str) -> None:
    if not trailer:
        return
    slot = _last_slot(node)
    if slot is None:
        return
    container, key, index = slot
    entry = container.ca.items.setdefault(key, [None] * 4)
    if entry[index] is None:
        entry[index] = CommentToken("\n" + trailer, CommentMark(0), None)
    else:
        entry[index].value += trailer


def append(
    section: CommentedMap | CommentedSeq, items: dict[str, Any] | list[Any], *, blank: bool = False
) -> None:
    """Add `items` at the end of `section`, moving the blank lines and comments that followed
    its last line (they belong to what comes next in the file) below the new items; `blank`
    puts a blank line before them."""
    new: list[Any] = list(items.values()) if isinstance(items, dict) else list(items)
    for value in new:
        _cut_trailer(value)  # a fragment's own spacing stays in the fragment
    trailer = _cut_trailer(section)
    if blank:
        _add_trailer(section, "\n")
    if isinstance(section, CommentedMap):
        assert isinstance(items, dict)
        for key, value in items.items():
            section[key] = explicit_nulls(value)
    else:
        section.extend(explicit_nulls(new))
    _add_trailer(section, trailer)
