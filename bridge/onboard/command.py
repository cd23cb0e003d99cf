"""The add-to-bot subcommand: plan, print, apply (or, with --check, report and exit 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.onboard import Options, ProjectError, apply, plan

NEXT_STEPS = """\
Next: retrain and run the bot from its directory (Rasa imports handoff_policy.py from there):
  export BRIDGE_ACTION_TOKEN=<a random secret, the same for Rasa and the bridge>
  rasa train && rasa run --enable-api --auth-token <RASA_TOKEN>
and start `handoff-bridge serve` (docs/add-handoff-to-your-bot.md)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the Rasa project directory")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 listing what is missing or wrong")  # fmt: skip
    parser.add_argument("--bridge-url", default=Options.bridge_url,
                        help="the bridge's action endpoint (default %(default)s)")  # fmt: skip
    parser.add_argument("--channel", choices=["socketio", "callback"], default=None,
                        help="add this channel when none can receive the agent's messages")  # fmt: skip
    parser.add_argument("--callback-url", default=Options.callback_url,
                        help="with --channel callback: YOUR endpoint Rasa posts bot messages to")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    options = Options(args.bridge_url, args.channel, args.callback_url)
    try:
        planned = plan(args.path, options)
    except (ProjectError, OSError) as exc:
        print(
            f"handoff-bridge add-to-bot: cannot add the handoff to {args.path}: {exc}\n"
            "Nothing was changed.",
            file=sys.stderr,
        )
        return 2
    if args.check:
        return _report_check(planned.changes, planned.problems, planned.notes)
    try:
        apply(planned)
    except OSError as exc:  # e.g. a read-only file: say which, no traceback
        print(f"handoff-bridge add-to-bot: cannot write: {exc}", file=sys.stderr)
        return 2
    for line in planned.changes or ["nothing to change: the handoff is already there"]:
        print(f"done: {line}" if planned.changes else line)
    for line in planned.problems:
        print(f"still to do: {line}")
    for line in planned.notes:
        print(f"note: {line}")
    if planned.changes:
        print(NEXT_STEPS)
    return 0


def _report_check(changes: list[str], problems: list[str], notes: list[str]) -> int:
    for line in changes:
        print(f"to do: {line}")
    for line in problems:
        print(f"wrong: {line}")
    for line in notes:
        print(f"note: {line}")
    if changes or problems:
        return 1
    print("ok: the handoff is in place")
    return 0
