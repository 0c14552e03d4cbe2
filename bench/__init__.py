"""`make bench`: the project's own benchmark, side by side with a naive baseline (not shipped)."""
