"""Study B (celldeath): transmitted-light fields, labels from file names, tiles, splits, synthetic data."""
