"""The three tasks side by side: train, evaluate, predict; each module is the one place its CLI calls."""
