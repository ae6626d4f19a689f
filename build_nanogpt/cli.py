"""Command-line plumbing shared by the scripts of this folder.

A typed dataclass holds every setting with its default; `parse_config` turns its fields into
`--kebab-case` options (with `--help`), applies an optional preset first and the command line on top.
A user mistake raises `UserError`; `run_main` turns it into one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Callable


class UserError(Exception):
    """A mistake in the command line or the input files: reported in one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + error on two lines; we want exactly one line for a bad option."""

    def error(self, message: str):
        raise UserError(message)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _field_type(field: dataclasses.Field) -> type:
    # `from __future__ import annotations` makes field.type a string
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    return {"int": int, "float": float, "str": str, "bool": bool}[kind]


def build_parser(cls, description: str, presets: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    if presets:
        parser.add_argument("--preset", default=None,
                            help=f"start from a named preset, one of {sorted(presets)}; "
                                 "options given on the command line override it")
    for f in dataclasses.fields(cls):
        kind = _field_type(f)
        help_text = f.metadata.get("help", "")
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper() if kind is not bool else "BOOL",
                            type=_parse_bool if kind is bool else kind,
                            help=f"{help_text} (default: {f.default!r})".strip())
    return parser


def parse_config(cls, argv: list[str] | None, description: str, presets: dict[str, dict] | None = None):
    """Build `cls` from its defaults, then `--preset`, then the explicit `--options`."""
    parser = build_parser(cls, description, presets)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if presets and args.preset is not None:
        if args.preset not in presets:
            raise UserError(f"unknown preset {args.preset!r}; choose one of {sorted(presets)}")
        values.update(presets[args.preset])
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name)
        if v is not None:
            values[f.name] = v
    return cls(**values)


def run_main(main: Callable[[], Any]) -> None:
    """Run `main()`; a UserError becomes `prog: error: message` on stderr and exit code 2."""
    try:
        main()
    except UserError as e:
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "build_nanogpt"
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"{prog}: error: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)
