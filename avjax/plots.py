"""`python -m avjax.plots`: figures and the study report (avjax/cli/plots.py)."""
from avjax import cli
from avjax.cli import plots
if __name__ == "__main__":
  cli.run(plots)
