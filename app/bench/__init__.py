"""The benchmark harness: a deterministic synthetic marketplace (`dataset`) and its progress display."""
