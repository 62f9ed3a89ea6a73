"""`python -m avjax.benchmark`: the benchmarks (avjax/cli/benchmark.py)."""
from avjax import cli
from avjax.cli import benchmark
if __name__ == "__main__":
  cli.run(benchmark)
