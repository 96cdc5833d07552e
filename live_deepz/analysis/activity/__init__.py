"""Neuron activity from one focal plane: the paper's C. elegans analysis (Fig. 3, Methods
"3D tracking of neuron locations and calcium activity").

A two-channel virtual multi-plane recording (nuclei + calcium, ``T, C, Z, Y, X``) is
registered against the body's motion, neurons are localised in 3D in the time-median nuclei
stack (and, for comparison, in the 2D input alone), each neuron's ``ΔF/F0`` trace is read
from the activity channel and the active neurons are clustered spectrally.

Modules (one job each):

- :mod:`.registration`: rigid 3D phase-correlation registration (scikit-image);
- :mod:`.localisation`: local maxima + watershed masks (scikit-image);
- :mod:`.traces`: ``F`` = mean of the N brightest voxels, ``ΔF/F0``, activity SNR;
- :mod:`.clustering`: Gaussian affinity, eigengap, spectral clustering (scikit-learn);
- :mod:`.pipeline`: :func:`analyse_recording` runs them on a recording;
- :mod:`.outputs`: ``neurons.csv``, ``traces.csv``, ``registration.csv``, ``summary.json``
  (atomic); :mod:`.plots`: the PNGs;
- :mod:`.truth`: the simulated worm's ground truth beside a ``record --sim`` recording, in
  the same coordinates as ``neurons.csv``.
"""

from .clustering import Clusters, affinity_matrix, cluster_traces, eigengap
from .localisation import Detections, LocaliseParams, localise
from .outputs import summary_dict, write_outputs
from .pipeline import ActivityParams, ActivityResult, analyse_recording, match_lateral
from .registration import ShiftEstimator, apply_shift, estimate_shift
from .scoring import match_3d, score_activity
from .traces import TraceExtractor, activity_snr, delta_f_over_f
from .truth import recording_truth, truth_path, write_recording_truth, write_sim_truth

__all__ = [
    "ActivityParams",
    "ActivityResult",
    "Clusters",
    "Detections",
    "LocaliseParams",
    "ShiftEstimator",
    "TraceExtractor",
    "activity_snr",
    "affinity_matrix",
    "analyse_recording",
    "apply_shift",
    "cluster_traces",
    "delta_f_over_f",
    "eigengap",
    "estimate_shift",
    "localise",
    "match_3d",
    "match_lateral",
    "recording_truth",
    "score_activity",
    "summary_dict",
    "truth_path",
    "write_outputs",
    "write_recording_truth",
    "write_sim_truth",
]
