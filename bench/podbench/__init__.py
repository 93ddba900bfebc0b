"""make bench: pod-router measured side by side with the static-proxy limit,
the OpenResty way and the seed's own design, on this machine, in one run.
bench/run.py is the entry point; docs/BENCHMARKS.md shows the last results."""
