"""Conformance: transformers' own common tests, fetched from its sdist at test time, run on every DeepSight class."""
