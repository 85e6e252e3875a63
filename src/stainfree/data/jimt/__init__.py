"""Study A (JIMT-1, bright-field + propidium iodide): synthetic data, preprocessing, DataModule."""
