"""The benchmark's own code: the synthetic marketplace it seeds (`python -m bench.seed`). The harness that measures
is tests/bench (`make bench`)."""
