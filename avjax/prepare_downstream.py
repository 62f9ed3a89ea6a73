"""`python -m avjax.prepare_downstream`: prepares a downstream dataset (avjax/cli/prepare_downstream.py)."""
from avjax import cli
from avjax.cli import prepare_downstream
if __name__ == "__main__":
  cli.run(prepare_downstream)
