"""`python -m avjax.discrepancy`: the discrepancy measures of a workdir (avjax/cli/discrepancy.py)."""
from avjax import cli
from avjax.cli import discrepancy
if __name__ == "__main__":
  cli.run(discrepancy)
