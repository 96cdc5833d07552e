"""Analysis of images, virtual stacks and recordings: numbers in, numbers out.

Part of the core: it imports none of engine/, calibration/ or ui/. Code that needs inference
takes a backend or refocuser as an argument instead of building one.

- :mod:`live_deepz.analysis.fwhm`: bead lateral FWHM fits (the paper's Methods, Fig. 4).
- :mod:`live_deepz.analysis.evaluation`: the ``live-deepz eval`` protocol (per-Δz metrics vs
  the unrefocused baseline, bead FWHM, single-image axial localisation).
"""
