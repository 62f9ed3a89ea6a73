"""`python -m avjax.export`: the export of f and g (avjax/cli/export.py)."""
from avjax import cli
from avjax.cli import export
if __name__ == "__main__":
  cli.run(export)
