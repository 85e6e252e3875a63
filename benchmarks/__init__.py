"""`make bench`: throughput arms, repeated and interleaved so a busy machine shows as spread, not as a figure."""
