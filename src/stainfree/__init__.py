"""stainfree: stain-free live/dead classification."""
