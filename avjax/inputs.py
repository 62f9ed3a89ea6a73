"""`python -m avjax.inputs`: what the inputs alone tell (avjax/cli/inputs.py)."""
from avjax import cli
from avjax.cli import inputs
if __name__ == "__main__":
  cli.run(inputs)
