"""The ``live-deepz`` command line.

Each subcommand lives in its own module ``live_deepz.commands.<name>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when
their command runs, so ``live-deepz info`` never pulls in Qt or TensorRT.
A subcommand whose module does not exist yet says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="live-deepz",
        description="Deep-Z virtual refocusing, live at the microscope.",
    )
    parser.add_argument("--version", action="version", version=f"live-deepz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        built = _is_built(name)
        p = sub.add_parser(name, help=help_text if built else f"{help_text} (not built yet)")
        if built:
            importlib.import_module(_command_module_name(name)).add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
