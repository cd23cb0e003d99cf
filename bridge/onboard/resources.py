"""What add-to-bot copies into a bot: files shipped inside the package (package-data), read
with importlib.resources so they are found in an installed wheel as in a checkout."""

from __future__ import annotations

from importlib import resources

_PACKAGE = "bridge.onboard"


def text(name: str) -> str:
    """A file of bridge/onboard/files/ (domain.yml, nlu.yml, rules.yml, policies.yml,
    handoff_policy.py)."""
    return resources.files(_PACKAGE).joinpath("files", name).read_text(encoding="utf-8")
