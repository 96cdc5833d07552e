"""``live-deepz demo``: the live app on the simulated microscope.

Examples::

    live-deepz demo                                  # beads, default model, planes -10:10:2
    live-deepz demo --sample worm --planes=-6:6:1.5
    live-deepz demo --screenshot out.png --seconds 5 # headless: stream 5 s, save, exit

Without a display (no ``DISPLAY``/``WAYLAND_DISPLAY`` and no ``QT_QPA_PLATFORM``) it says to
use ``--screenshot`` and exits with status 2; ``--screenshot`` always runs offscreen.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..sample_names import sample_argument, samples_help

__all__ = [
    "add_app_arguments",
    "add_arguments",
    "check_screenshot_path",
    "display_available",
    "prepare_display",
    "run",
]

from ..display import display_available

NO_DISPLAY = 2


def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``demo`` and ``gui``."""
    parser.add_argument(
        "--model",
        default=None,
        help="model name or folder (default: the last one used, else the bundled default)",
    )
    parser.add_argument(
        "--planes",
        default=None,
        help="plane offsets in µm for the grid, 'start:stop:step' (ends included) or a comma "
        "list (default: the last plan used, else -10:10:2)",
    )
    parser.add_argument("--depth-um", type=float, default=None, help="the single plane's depth")
    parser.add_argument("--backend", default=None, help="auto, torch, compile, ... (see info)")
    parser.add_argument("--precision", default=None, help="auto, fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--exposure-ms", type=float, default=None, help="camera exposure, ms")
    parser.add_argument(
        "--screenshot",
        default=None,
        metavar="PNG",
        help="headless: stream for --seconds, save a screenshot of the window here, exit",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="stream this long, then exit (default with --screenshot: 5)",
    )
    parser.add_argument(
        "--settings", default=None, metavar="INI", help="use this settings file (tests, scripts)"
    )
    parser.add_argument("--no-live", action="store_true", help="open without starting live")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sample",
        type=sample_argument(),  # type: ignore[arg-type]
        default="beads",
        metavar="SAMPLE",
        help=f"simulated sample: {samples_help()}",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="simulated frame size (px); default 512 on a GPU, on a CPU a smaller centred "
        "field timed so that the planes refresh a few times a second (said at start)",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulated sample seed")
    add_app_arguments(parser)


def check_screenshot_path(path: str) -> None:
    """Fail at once (not after streaming) when the screenshot cannot be written there."""
    from ..errors import InputError

    p = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(p)
    if not p.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
        raise InputError(f"--screenshot {path}: give a .png (or .jpg/.tif) file name")
    if not os.path.isdir(folder):
        raise InputError(f"cannot write the screenshot {path}: the folder {folder} does not exist")
    existed = os.path.exists(p)
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise InputError(
            f"cannot write the screenshot {path}: {exc.strerror or exc}; choose a folder you "
            "can write to"
        ) from None
    if not existed:
        os.remove(p)


def prepare_display(args: argparse.Namespace, command: str) -> int | None:
    """Set up Qt's platform before it is imported; an exit status if no window can open."""
    if args.screenshot:
        check_screenshot_path(args.screenshot)
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        if args.seconds is None:
            args.seconds = 5.0
        return None
    if display_available():
        return None
    print(
        f"live-deepz {command}: no display here (DISPLAY / WAYLAND_DISPLAY are not set), so "
        "the window cannot open. To run headless and get a picture of it, use\n"
        f"    live-deepz {command} --screenshot out.png --seconds 5\n"
        "or run it on a machine with a desktop (or with X forwarding: ssh -X).",
        file=sys.stderr,
    )
    return NO_DISPLAY


def _check_ui() -> None:
    import importlib.util

    from ..errors import InputError

    missing = [m for m in ("qtpy", "pyqtgraph") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(
            f"the live app needs {' and '.join(missing)}: pip install 'live-deepz[ui]'"
        )


def session_config(args: argparse.Namespace, source: object, **extra: object) -> object:
    from live_deepz.ui import SessionConfig

    return SessionConfig(
        source=source,
        model=args.model,
        planes=args.planes or "",
        depth_um=args.depth_um,
        backend=args.backend or "",
        precision=args.precision or "",
        device=args.device,
        exposure_ms=args.exposure_ms,
        autostart=not args.no_live,
        **extra,  # type: ignore[arg-type]
    )


def run_window(args: argparse.Namespace, config: object) -> int:
    from live_deepz.ui import AppOptions, run_app

    options = AppOptions(
        screenshot=args.screenshot, seconds=args.seconds, settings_path=args.settings
    )
    return run_app(config, options)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    status = prepare_display(args, "demo")
    if status is not None:
        return status
    _check_ui()
    if args.size is None and args.planes is None and args.device in ("auto", "cpu"):
        from ._cpu_demo import choose_cpu_demo

        choice = choose_cpu_demo(args.model, args.backend or "auto", args.precision or "auto")
        if choice is not None:
            print(choice.describe(), file=sys.stderr)
            args.size, args.planes = choice.size, choice.planes
            args.depth_um = 0.0 if args.depth_um is None else args.depth_um
            if args.exposure_ms is None:
                args.exposure_ms = choice.exposure_ms
    config = session_config(
        args,
        "sim",
        sample=args.sample,
        size=args.size or 512,
        seed=args.seed,
        allow_standin=True,
    )
    return run_window(args, config)
