"""`python -m avjax.main`: pretraining (avjax/cli/main.py)."""
from avjax import cli
from avjax.cli import main
if __name__ == "__main__":
  cli.run(main)
