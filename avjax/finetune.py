"""`python -m avjax.finetune`: fine-tuning or linear evaluation (avjax/cli/finetune.py)."""
from avjax import cli
from avjax.cli import finetune
if __name__ == "__main__":
  cli.run(finetune)
