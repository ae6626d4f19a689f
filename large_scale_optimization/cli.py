"""Command-line helpers shared by train.py, bench.py and denoise.py: one-line errors, --help from Config."""
from __future__ import annotations

import argparse
import inspect


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage on a mistake; a user mistake here is one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_help(cls) -> dict:
    """{field: the comment after it} for a dataclass, so --help says what the config says (and argparse shows
    no default for an option without help text)."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        name, sep, rest = line.strip().partition(":")
        if sep and "#" in rest and name.isidentifier():
            out[name] = rest.split("#", 1)[1].strip()
    return out
