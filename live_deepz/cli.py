"""The ``live-deepz`` command line.

Each subcommand lives in its own module ``live_deepz.commands.<name>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when
their command runs (only the requested command's options are built), so ``live-deepz
--help`` and ``live-deepz CMD --help`` never pull in torch or Qt.
A subcommand whose module does not exist yet says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import sys
from collections.abc import Sequence
from typing import ClassVar, NoReturn

from ._version import __version__
from .errors import LiveDeepzError

#: subcommand -> one-line help, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "info": "versions, compute devices, inference backends, bundled models, default optics",
    "models": "list the bundled and user models with their cards",
    "simulate": "write a simulated ground-truth z-stack (OME-TIFF) and its ground truth JSON",
    "train": "train Deep-Z / Deep-Z+ on z-stacks",
    "eval": "evaluate a model on freshly simulated held-out samples",
    "refocus": "refocus images or videos offline onto planes or surfaces",
    "record": "record the raw stream and the virtual planes from a camera",
    "complete": "finish the virtual planes of an interrupted recording",
    "bench": "benchmark the inference engine and the live pipeline",
    "calibrate": "estimate a sample's tilt / curvature surface from an image",
    "activity": "neurons in 3D, their ΔF/F traces and clusters from a two-channel recording",
    "register": "the shift between a wide-field and a confocal z-stack (PSF or xcorr)",
    "demo": "open the live app on the simulated microscope",
    "gui": "open the live app on a Micro-Manager configuration",
}

NOT_BUILT_EXIT = 2


def _command_module_name(name: str) -> str:
    return f"live_deepz.commands.{name}"


def _is_built(name: str) -> bool:
    return importlib.util.find_spec(_command_module_name(name)) is not None


class _Parser(argparse.ArgumentParser):
    """argparse with a hint for option values that start with ``-`` (``--planes -10:10:2``)."""

    argv: ClassVar[list[str]] = []

    def error(self, message: str) -> NoReturn:
        hint = negative_value_hint(message, self.argv)
        super().error(message + hint)


def negative_value_hint(message: str, argv: Sequence[str]) -> str:
    """``"; write --planes=-10:10:2 ..."`` when argparse took a value starting with ``-``
    (``--planes -10:10:2``) for an option, else ``""``."""
    if "expected one argument" not in message:
        return ""
    names = message.split(":", 1)[0].replace("argument", "").strip().split("/")
    for tok, value in itertools.pairwise(argv):
        if tok in names and len(value) > 1 and value[0] == "-" and value[1] in "0123456789.":
            return f" (a value that starts with '-' must be joined with '=': write {tok}={value})"
    return ""


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    for tok in argv:
        if not tok.startswith("-"):
            return tok
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand's module is imported for its options
    (the others are listed by name and help): ``live-deepz --help`` and ``live-deepz CMD
    --help`` never import torch or Qt."""
    parser = _Parser(
        prog="live-deepz",
        description="Deep-Z virtual refocusing, live at the microscope.",
    )
    parser.add_argument("--version", action="version", version=f"live-deepz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        built = _is_built(name)
        p = sub.add_parser(name, help=help_text if built else f"{help_text} (not built yet)")
        if built and (only is None or only == name):
            importlib.import_module(_command_module_name(name)).add_arguments(p)
        elif not built:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.argv = argv
    requested = _requested_command(argv)
    parser = build_parser(only=requested if requested in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return NOT_BUILT_EXIT
    if not _is_built(args.command):
        print(
            f"live-deepz {args.command}: this command is not built yet in version "
            f"{__version__}. See `live-deepz --help` for the commands that work.",
            file=sys.stderr,
        )
        return NOT_BUILT_EXIT
    module = importlib.import_module(_command_module_name(args.command))
    try:
        return int(module.run(args) or 0)
    except LiveDeepzError as exc:
        print(f"live-deepz {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"live-deepz {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
