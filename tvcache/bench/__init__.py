"""Benchmarks: workloads and the runner behind ``tvcache bench``."""
