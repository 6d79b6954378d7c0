"""The side-by-side method comparison behind ``benchmarks/compare_methods.py``."""
