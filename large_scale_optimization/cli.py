"""The command line of every script in this folder: a dataclass of settings becomes its --flags.

This file is the same, byte for byte, in all four project folders (each folder stands alone, so it keeps its
own copy; tests/test_repo.py checks that the copies agree).

Each setting is declared once, its help and its allowed range beside its default:

    learning_rate: float = knob(6e-4, "peak learning rate", lo=0, hi=10)

`parse_config(Config, argv)` returns a Config built from the defaults, then `--preset`, then the flags
given, and refuses a value outside its knob's range (`check_ranges`). Flags are never abbreviated
(`--lr 5` is not `--lr-decay-iters 5`); an unknown flag is refused with a suggestion; a float flag must be
finite; negative numbers (`-1e-8`, `-inf`) are values, not flags. A user mistake raises UserError, and
`run_main` prints it as one line, `PROG: error: ...`, and exits with code 2; a Ctrl-C that reaches it is
one line, `PROG: interrupted`, and exit code 130.

`StopSignal` is how a trainer stops on Ctrl-C or SIGTERM with a resumable checkpoint: the first signal is
announced at once and honoured after the current step; a second one aborts.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import signal
import sys
import time
import typing
from pathlib import Path


class UserError(Exception):
    """A mistake in the command line or the input files: one line on stderr, exit code 2."""


def knob(default, help: str, lo=None, hi=None, **argparse_kwargs):
    """A config field: its default, its help text and its inclusive range [lo, hi] (None: unbounded) in one
    place. Extra argparse keywords (e.g. nargs, choices) ride along."""
    meta = {"help": help, "range": (lo, hi), "argparse": argparse_kwargs}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_ranges(cfg, limits: dict[str, tuple] | None = None) -> None:
    """UserError for the first setting outside its inclusive range, as `--name VALUE: must be in [lo, hi]`.
    The ranges are those of cfg's knobs, then `limits` ({field: (lo, hi)}, for ranges known only at run
    time). None values are not checked; a bound of None is open."""
    ranges = {f.name: f.metadata.get("range", (None, None)) for f in dataclasses.fields(cfg)}
    for name, (lo, hi) in {**ranges, **(limits or {})}.items():
        value = getattr(cfg, name)
        if value is None or isinstance(value, bool) or (lo is None and hi is None):
            continue
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            low, high = ("-inf" if lo is None else lo), ("inf" if hi is None else hi)
            raise UserError(f"--{name.replace('_', '-')} {value}: must be in [{low}, {high}]")


def check_positive(cfg, *names: str) -> None:
    """UserError for the first of these settings that is not > 0 (a bound a closed range cannot state), in
    check_ranges' format: `--lam 0.0: must be in (0, hi]`, hi the knob's upper bound."""
    his = {f.name: f.metadata.get("range", (None, None))[1] for f in dataclasses.fields(cfg)}
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            hi = his.get(name)
            raise UserError(f"--{name.replace('_', '-')} {value}: must be in (0, {'inf)' if hi is None else f'{hi}]'}")


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


def whole_number(text: str) -> int:
    """An int, also written as a float that is whole (1e12, 6e5: how step counts are often written), so that the
    knob's range judges it: `--total-batch 1e12` is out of range, not an "invalid int"."""
    try:
        return int(text)
    except ValueError:
        value = finite_float(text)  # not a number at all: argparse's "invalid int value: 'x'"
        if value != int(value):
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        return int(value)


whole_number.__name__ = "int"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, no prefix matching, and "did you mean" for an unknown flag."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        # a value, not a flag: -1e-8 and -inf too, not only argparse's -1 and -0.5 (then the type judges it)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)

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
    return {float: finite_float, int: whole_number, bool: to_bool}.get(base, base)


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
    """defaults < preset < the flags given; then every knob's range is checked."""
    flags = vars(build_parser(cls, prog, description, presets).parse_args(argv))
    preset = presets[flags.pop("preset")] if "preset" in flags else {}
    cfg = cls(**{**preset, **flags})
    check_ranges(cfg)
    return cfg


class StopSignal:
    """`with StopSignal() as stop:` Ctrl-C (SIGINT) and SIGTERM, while `stop.armed` (the training loop), only
    set `stop.name`: the loop finishes its step, writes a resumable checkpoint and exits cleanly. The first
    signal is announced on stderr at once (`announce=False` on all ranks but 0). Unarmed (setup, the final
    evaluation), or a second signal: KeyboardInterrupt at once. A repeat of the same signal within
    `grace` seconds is the same request, not a second one: a launcher forwards the signal its workers also
    receive (torchrun's agent and SLURM's slurmstepd each send SIGTERM on a preemption, a terminal's Ctrl-C
    reaches torchrun and its workers). The previous handlers come back on exit."""

    def __init__(self, armed: bool = True, announce: bool = True, grace: float = 1.0):
        self.name, self.armed, self.announce, self.grace = None, armed, announce, grace
        self.first_at, self.previous = 0.0, {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.name is not None and name == self.name and time.monotonic() - self.first_at < self.grace:
            return
        if self.name is not None or not self.armed:
            raise KeyboardInterrupt(name)
        self.name, self.first_at = name, time.monotonic()
        if self.announce:  # os.write: print() inside a handler could re-enter a print the signal interrupted
            os.write(2, f"{name}: stopping after this step (Ctrl-C again to abort)\n".encode())

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def stop_on_sigterm() -> None:
    """From now on SIGTERM (a scheduler's or `kill`'s stop) ends the script as Ctrl-C does: cleanup runs,
    then `run_main` prints one line. For scripts without a resumable state of their own (trainers use
    StopSignal)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, interrupt)


def run_main(main, *args) -> None:
    """Call main(*args) and exit: with main's int, else 0 (a result of any other kind is success); a
    UserError becomes `PROG: error: MESSAGE` (one line) on stderr and exit code 2; a Ctrl-C or SIGTERM that
    reaches here the line `PROG: interrupted` and exit code 130 (the shell's code for SIGINT)."""
    prog = Path(sys.argv[0]).name
    try:
        code = main(*args)
    except UserError as e:
        message = " ".join(str(e).split())
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted" + (f" ({e.args[0]})" if e.args else ""), file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
