"""``live-deepz gui``: the live app on a real microscope (a Micro-Manager configuration).

Example::

    live-deepz gui --config C:/Micro-Manager/MMConfig_scope.cfg --model mymodel

Same window and options as ``live-deepz demo``; no untrained stand-in is ever used here: it
needs a trained model (``--model``, the last one used, or the bundled default). Loading a
configuration needs Micro-Manager's device adapters (``mmcore install``, pymmcore-plus).
"""

from __future__ import annotations

import argparse

from .demo import _check_ui, add_app_arguments, prepare_display, run_window, session_config

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        metavar="CFG",
        help="Micro-Manager configuration (.cfg); loading it needs Micro-Manager's device "
        "adapters on this machine (install them once with `mmcore install`)",
    )
    add_app_arguments(parser)


def run(args: argparse.Namespace) -> int:
    status = prepare_display(args, "gui")
    if status is not None:
        return status
    _check_ui()
    config = session_config(args, args.config, allow_standin=False)
    return run_window(args, config)
