"""The outcome of looking at a project: the files to write, what changes, what is still wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridge.onboard.yamlfile import YamlFile


@dataclass
class Plan:
    root: Path
    writes: dict[Path, str] = field(default_factory=dict)  # path -> new text
    changes: list[str] = field(default_factory=list)  # "file: what" for each planned change
    problems: list[str] = field(default_factory=list)  # wrong, and not fixed by this run
    notes: list[str] = field(default_factory=list)  # worth knowing, nothing to fix

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def change(self, path: Path, what: str) -> None:
        self.changes.append(f"{self.rel(path)}: {what}")

    def stage(self, doc: YamlFile) -> None:
        """Write `doc` if it differs from the file on disk."""
        if doc.changed:
            self.writes[doc.path] = doc.text()
