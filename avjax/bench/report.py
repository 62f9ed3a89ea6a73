"""The machine a benchmark ran on, and its figures recorded into docs/benchmarks.md."""

import datetime
import os
import platform
import re

import jax

from avjax import fileio


def machine_description():
  """One line naming the machine the figures were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    if names:
      cpu = names[0]
  except OSError:
    pass
  accel = ""
  try:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
      accel = f", {jax.device_count()}x {dev.device_kind}"
  except Exception:  # pylint: disable=broad-except
    pass
  return f"{os.cpu_count()} cores ({cpu}){accel}, Python {platform.python_version()}"


def record_section(name, markdown, path, command=None):
  """Replaces the `## <name>` section of docs/benchmarks.md with `markdown` (atomic),
  stamped with the date, the machine and the command that measured it."""
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# avjax benchmarks\n"
  stamp = datetime.date.today().isoformat()
  by = f", with `{command}`" if command else ""
  section = (f"## {name}\n\n_Measured {stamp} on {machine_description()}{by}._\n\n"
             f"{markdown.strip()}\n")
  pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text)
  else:
    text = text.rstrip("\n") + "\n\n" + section
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text.rstrip("\n") + "\n")
