"""The command line of every script in this folder: a dataclass of settings becomes its --flags.

Each setting is declared once, its help beside its default:

    learning_rate: float = knob(6e-4, "peak learning rate")

`parse_config(Config, argv)` returns a Config built from the defaults, then `--preset`, then the flags
given. Flags are never abbreviated (`--lr 5` is not `--lr-decay-iters 5`); an unknown flag is refused with
a suggestion; a float flag must be finite. A user mistake raises UserError, and `run_main` prints it as
one line, `PROG: error: ...`, and exits with code 2 (a Ctrl-C: `PROG: interrupted`, exit code 130).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import sys
import typing
from pathlib import Path


class UserError(Exception):
    """A mistake in the command line or the input files: one line on stderr, exit code 2."""


def knob(default, help: str, **argparse_kwargs):
    """A config field with its help text beside its default (extra argparse keywords, e.g. nargs, ride along)."""
    meta = {"help": help, "argparse": argparse_kwargs}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_ranges(cfg, limits: dict[str, tuple]) -> None:
    """UserError for the first setting outside its inclusive range: `--key VALUE must be in [lo, hi]`."""
    for key, (lo, hi) in limits.items():
        value = getattr(cfg, key)
        if not lo <= value <= hi:
            raise UserError(f"--{key.replace('_', '-')} {value} must be in [{lo}, {hi}]")


def to_bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


finite_float.__name__ = "float"  # argparse names the type in its message: "invalid float value: 'x'"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, no prefix matching, and "did you mean" for an unknown flag."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            unknown = message.split(":", 1)[1].split()[0].split("=")[0]
            guess = suggest(unknown, [o for a in self._actions for o in a.option_strings if o.startswith("--")])
            message = f"unknown option {unknown}" + (f"; did you mean {guess}?" if guess else "")
        raise UserError(message)


def suggest(flag: str, flags: list[str]) -> str | None:
    """The flag the user probably meant: same initials (--lr -> --learning-rate), else one it begins
    (--out -> --out-dir), else the closest spelling."""
    initials = [f for f in flags if "".join(w[0] for w in f[2:].split("-") if w) == flag[2:]]
    longer = [f for f in flags if f.startswith(flag + "-")]
    close = difflib.get_close_matches(flag, flags, n=1, cutoff=0.6)
    return (initials or longer or close or [None])[0]


def _flag_type(hint):
    """int, float, str or bool, also inside `X | None`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return {float: finite_float, bool: to_bool}.get(base, base)


def build_parser(cls, prog: str, description: str, presets: dict[str, dict] | None = None) -> Parser:
    """One --flag per field of `cls` (booleans: --x, --x false, --no-x), plus --preset when there are presets."""
    parser = Parser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), help="start from these named settings")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs = {"help": f"{f.metadata.get('help', '')} (default: {default})",
                  "type": _flag_type(hints[f.name]), **f.metadata.get("argparse", {})}
        if kwargs["type"] is to_bool:
            parser.add_argument(flag, nargs="?", const=True, metavar="BOOL", **kwargs)
            parser.add_argument("--no-" + flag[2:], dest=f.name, action="store_false", help=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, metavar=f.name.upper(), **kwargs)
    return parser


def parse_config(cls, argv: list[str] | None, prog: str, description: str,
                 presets: dict[str, dict] | None = None):
    """defaults < preset < the flags given."""
    flags = vars(build_parser(cls, prog, description, presets).parse_args(argv))
    preset = presets[flags.pop("preset")] if "preset" in flags else {}
    return cls(**{**preset, **flags})


def run_main(main, *args) -> None:
    """Call main(*args) and exit: with main's int, else 0; a UserError becomes `PROG: error: MESSAGE` (one
    line) on stderr and exit code 2; a Ctrl-C that reaches here (train.py saves a checkpoint on the first one;
    this is the fallback) the line `PROG: interrupted` and exit code 130."""
    prog = Path(sys.argv[0]).name
    try:
        code = main(*args)
    except UserError as e:
        message = " ".join(str(e).split())
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)  # an int is the exit code; a result of any other kind is 0
