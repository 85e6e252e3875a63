"""Study B (celldeath): transmitted-light fields, labels from file names, tiles, splits, synthetic data.

Modules (one job each):
  naming      token scheme that reads label / cell line / time / replicate from a FILE NAME
  catalog     folder -> one row per field; unlabelled files reported; task classes (fixed order)
  tiling      n tiles per field (2=1x2, 4=2x2, 6=2x3, 8=2x4), 8-bit conversion, memmap tile cache
  splits      by whole field: held-out replicate | leave-one-cell-line-out | within a replicate
  transforms  the tool's augmentation (dihedral, +-10 deg rotation, zoom, lighting) on uint8 tiles
  dataset     tiles -> dict samples (uint8 image, target, index), epoch-seeded augmentation
  datamodule  CellDeathDataModule (docs/ARCHITECTURE.md contract); prints/saves the split report
  synthetic   multi-line synthetic TLM generator (`python -m stainfree.data.celldeath.synthetic`)
"""
