"""Inference on raw frames: tiling like training, batched prediction, plate-level statistics.

Pure statistics (plate map, per-well bootstrap, dose-response, Z') live in their own modules so
they can be tested without a model; `predictor` wires them to a checkpoint.
"""
