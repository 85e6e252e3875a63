"""Evaluation: metrics with Brodersen intervals, plots, Grad-CAM, t-SNE, reports and run comparison."""
