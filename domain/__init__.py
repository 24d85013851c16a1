"""Agora's pure domain: rules, value objects and errors. Standard library only."""
