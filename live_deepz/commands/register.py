"""``live-deepz register``: the shift between a wide-field and a confocal z-stack.

Example::

    live-deepz register wf.ome.tif conf.ome.tif --method psf --json shift.json --plots regplots/

prints ``shift_zyx`` (planes, px, px): the shift that, applied to the confocal stack,
aligns it with the wide-field one. ``--method psf`` estimates the kernel between the two
stacks (the Deep-3D paper's Eq. 2, Chambolle-Pock) and reads the shift from its maximum;
``xcorr`` is plain cross-correlation. ``--plots DIR`` draws both methods' axial profiles
(the paper's Fig. 8b). See ``live_deepz.analysis.registration``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("widefield", help="wide-field z-stack (TIFF / OME-TIFF)")
    parser.add_argument("confocal", help="confocal z-stack of the same sample, same grid")
    parser.add_argument("--method", choices=("psf", "xcorr"), default="psf")
    parser.add_argument(
        "--max-shift",
        nargs=3,
        type=int,
        default=None,
        metavar=("Z", "Y", "X"),
        help="largest shift searched, planes px px (default: a quarter of each axis)",
    )
    parser.add_argument("--iterations", type=int, default=None, help="psf: Chambolle-Pock steps")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--plots", default=None, help="folder for the axial-profile figure")


def _read(path: str) -> np.ndarray:
    from ..io import read_stack

    st = read_stack(path, z_step_um=1.0)  # the step is not needed: shifts are in planes
    if st.data.ndim != 3:
        raise InputError(f"{path}: a single-channel (Z, Y, X) stack is needed, got {st.axes}")
    return np.asarray(st.data)


def run(args: argparse.Namespace) -> int:
    from ..analysis.registration import ITERATIONS, register

    wf = _read(args.widefield)
    conf = _read(args.confocal)
    ms = tuple(args.max_shift) if args.max_shift else None
    if ms is not None and min(ms) < 1:
        raise InputError(f"--max-shift must be >= 1 on every axis, got {list(ms)}")
    kw: dict[str, object] = {"max_shift": ms}
    if args.method == "psf":
        it = args.iterations or ITERATIONS
        if it < 1:
            raise InputError(f"--iterations must be >= 1, got {it}")
        kw["iterations"] = it
    res = register(wf, conf, args.method, **kw)
    z, y, x = res.shift_zyx
    print(
        f"{args.method}: shift_zyx = [{z:.2f}, {y:.2f}, {x:.2f}] (planes, px, px) "
        f"in {res.seconds:.1f} s; apply it to the confocal stack to align it"
    )
    out = res.to_dict()
    out.update(widefield=str(args.widefield), confocal=str(args.confocal))
    if args.plots:
        from ..analysis.registration import register as reg
        from ..analysis.registration_plots import plot_axial_profiles

        other = "xcorr" if args.method == "psf" else "psf"
        both = [res, reg(wf, conf, other, max_shift=ms)]
        png = plot_axial_profiles(both, Path(args.plots) / "registration_axial_profiles.png")
        out["plot"] = str(png)
        out["other_method"] = both[1].to_dict()
        print(f"wrote {png}")
    if args.json:
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(out, indent=1))
        print(f"wrote {p}")
    return 0
