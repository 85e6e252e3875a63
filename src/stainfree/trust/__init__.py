"""Can this prediction be trusted? Calibrated probabilities and out-of-distribution (OOD) flags.

- ``calibration``: temperature scaling fitted on validation logits, ECE, reliability bins.
- ``image_stats``: per-image input statistics (bit depth, size, model-input scale, intensity, focus).
- ``input_contract``: reference distributions of those statistics and the checks against them.
- ``mahalanobis``: class-conditional Mahalanobis distance of penultimate features (shared shrunk covariance).
- ``scoring``: the per-image / per-patch API predict.py calls (``OODScorer``, ``score_image``).
- ``checkpoint``: adds the blocks to a checkpoint file atomically.

These depend on nothing above ``utils``. Fitting them on a model + DataModule lives in
``stainfree.inference.trust_fit``; the report's calibration section in
``stainfree.evaluation.calibration_report``.
"""
