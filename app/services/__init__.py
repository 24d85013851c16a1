"""Use cases: one function each, one transaction each. The only layer that commits."""
