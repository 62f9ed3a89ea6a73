"""`python -m avjax.finetune_all`: every downstream split, Table 5 (avjax/cli/finetune_all.py)."""
from avjax import cli
from avjax.cli import finetune_all
if __name__ == "__main__":
  cli.run(finetune_all)
