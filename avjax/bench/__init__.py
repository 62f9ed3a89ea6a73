"""Benchmarks run by `python -m avjax.benchmark`: ingest, input pipeline, training step.

Each module has `TITLE` and `run(flags) -> markdown`; report.py names the machine and
records figures into docs/benchmarks.md. The step benchmark (step, flops, hlo) imports
no TensorFlow, so it runs on accelerator hosts that have only JAX.
"""
