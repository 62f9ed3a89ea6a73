"""The package's shape, read from its source with `ast`: one-way imports, TensorFlow fenced in.

Every import is read, at every nesting level (function-local imports too), as are
`importlib.import_module("...")` and `__import__("...")` calls with a literal name.
"""

import ast
import subprocess
import sys

import pytest

from helpers import MODULES, ROOT, imports_of

# Stages of the data flow, lowest first: each folder or root module has one rank, and a
# module may import only modules of its own or a lower rank. Within a rank, no cycles.
RANKS = {
    "avjax": 0, "avjax.fileio": 0, "avjax.storage": 0, "avjax.config_args": 0,
    "avjax.console": 0, "avjax.dirlock": 0,
    "avjax.media": 1, "avjax.models": 1, "avjax.losses": 1, "avjax.sharding": 1,
    "avjax.optim": 1, "avjax.metrics": 1,
    "avjax.data": 2, "avjax.checkpoint": 2, "avjax.synthetic": 2,
    "avjax.ingest": 3, "avjax.evals": 3, "avjax.resume": 3, "avjax.validate": 3,
    "avjax.loop": 4, "avjax.workdir": 4,
    "avjax.pretrain": 5, "avjax.downstream": 5,
    "avjax.bench": 6,
    # On top: the run configs (get_config files the commands read) and the commands
    # (avjax/cli/, with their python -m avjax.<verb> entry points). Nothing below imports them.
    "avjax.configs": 7, "avjax.cli": 7,
}
ENTRY_POINTS = {"avjax.main", "avjax.export", "avjax.discrepancy", "avjax.plots",
                "avjax.synthetic.__main__", "avjax.prepare_downstream", "avjax.finetune",
                "avjax.finetune_all", "avjax.benchmark", "avjax.ingest.__main__",
                "avjax.inputs"}
ENTRY_RANK = 7


def is_command(module):
  """An entry point or a command's module: they define their flags when imported."""
  return module in ENTRY_POINTS or module.startswith("avjax.cli.")

# Modules that may import TensorFlow themselves: the input pipelines and the records'
# Example format.
TF_ALLOWED = ("avjax.data.", "avjax.downstream.input", "avjax.downstream.views")
# Third-party modules that are (or load) TensorFlow.
TF_MODULES = ("tensorflow", "tensorflow_datasets", "tensorflow_io", "clu.metric_writers",
              "clu.periodic_actions")
# What must run on an accelerator host without TensorFlow: no import at any nesting level
# may reach TensorFlow, directly or through another module.
TF_FREE = ("avjax.models", "avjax.losses", "avjax.sharding", "avjax.optim", "avjax.metrics",
           "avjax.checkpoint", "avjax.resume", "avjax.loop", "avjax.workdir",
           "avjax.pretrain.step", "avjax.pretrain.config", "avjax.evals",
           "avjax.bench.step", "avjax.bench.flops", "avjax.bench.hlo", "avjax.bench.memory",
           "avjax.configs", "avjax.config_args", "avjax.fileio", "avjax.console", "avjax.storage",
           "avjax.dirlock",
           "avjax.media",
           "avjax.data.config",
           "avjax.data.records", "avjax.data.sampling", "avjax.data.scene_sampling",
           "avjax.data.titles", "avjax.data.batch_layout", "avjax.data.layouts",
           "avjax.ingest.params", "avjax.ingest.lock", "avjax.ingest.verify",
           "avjax.downstream.config", "avjax.validate")


def rank(module):
  if module in ENTRY_POINTS:
    return ENTRY_RANK
  best = max((p for p in RANKS if module == p or module.startswith(p + ".")), key=len)
  return RANKS[best]


def test_every_module_has_a_rank_and_a_one_line_docstring():
  for module, path in MODULES.items():
    rank(module)
    doc = ast.get_docstring(ast.parse(open(path, encoding="utf-8").read()))
    assert doc and doc.strip().splitlines()[0].strip(), f"{path}: no docstring"


def test_imports_run_one_way():
  upward = []
  for module in MODULES:
    for target, line, _, _ in imports_of(module):
      assert target != "<dynamic>", f"{MODULES[module]}:{line}: import of a computed name"
      if target in MODULES and rank(target) > rank(module):
        upward.append(f"{MODULES[module]}:{line}: {module} (rank {rank(module)}) imports "
                      f"{target} (rank {rank(target)})")
  assert not upward, "\n".join(upward)


def test_the_root_holds_the_library_and_thin_entry_points_of_the_commands():
  # A command at the root (python -m avjax.<verb>) only runs avjax/cli/<verb>.py, so no
  # root module is a command beside a library module of its name.
  for module in sorted(m for m in ENTRY_POINTS if m.count(".") == 1):
    verb = module.split(".")[1]
    assert [t for t, _, _, _ in imports_of(module)] == ["avjax.cli", f"avjax.cli.{verb}"], module
    assert len(open(MODULES[module], encoding="utf-8").read().splitlines()) <= 10, module
    assert f"avjax.cli.{verb}" in MODULES


def test_no_import_cycles():
  graph = {m: sorted({t for t, _, _, _ in imports_of(m) if t in MODULES and t != m})
           for m in MODULES}
  state, stack, cycles = {}, [], []

  def dfs(m):
    state[m] = "open"
    stack.append(m)
    for t in graph[m]:
      if state.get(t) == "open":
        cycles.append(stack[stack.index(t):] + [t])
      elif t not in state:
        dfs(t)
    stack.pop()
    state[m] = "done"
  for m in sorted(graph):
    if m not in state:
      dfs(m)
  assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _is_tf(name):
  return any(name == t or name.startswith(t + ".") for t in TF_MODULES)


def test_tensorflow_only_in_the_input_modules():
  direct = [f"{MODULES[m]}:{line}: {t}" for m in MODULES for t, line, _, _ in imports_of(m)
            if _is_tf(t) and not m.startswith(TF_ALLOWED)]
  assert not direct, "TensorFlow imported outside the input modules:\n" + "\n".join(direct)


def test_tensorflow_free_modules_never_reach_tensorflow():
  reach = {}

  def reaches(m, seen=()):
    if m not in reach:
      reach[m] = None
      for t, _, _, _ in imports_of(m):
        if _is_tf(t):
          reach[m] = [m, t]
          break
        if t in MODULES and t not in seen:
          path = reaches(t, seen + (m,))
          if path:
            reach[m] = [m] + path
            break
    return reach[m]
  bad = [" -> ".join(reaches(m)) for m in MODULES
         if m.startswith(TF_FREE) and reaches(m)]
  assert not bad, "\n".join(bad)


def _module_level_calls(path):
  tree = ast.parse(open(path, encoding="utf-8").read())
  out = []
  for node in tree.body:
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
      func = node.value.func
      if isinstance(func, ast.Attribute) and func.attr in ("defvjp", "defjvp"):
        continue  # completes a custom_vjp definition; no effect outside the module
      out.append(node.lineno)
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
      out += [d.lineno for d in node.decorator_list
              if "register" in ast.unparse(d) or "signal" in ast.unparse(d)]
  return out


def test_no_work_at_import_time():
  # Library modules only define things; the commands define their flags.
  bad = [f"{MODULES[m]}:{line}" for m in MODULES if not is_command(m)
         for line in _module_level_calls(MODULES[m])]
  assert not bad, "module-level calls (import-time side effects):\n" + "\n".join(bad)


@pytest.mark.parametrize("text,expected", [
    ("import avjax.loop", ["avjax.loop"]),
    ("from avjax.evals import measures, plots", ["avjax.evals.measures", "avjax.evals.plots"]),
    ("def f():\n  from avjax.data import pipeline", ["avjax.data.pipeline"]),
    ("import importlib\nimportlib.import_module('avjax.pretrain')", ["importlib", "avjax.pretrain"]),
])
def test_the_reader_sees_every_kind_of_import(text, expected, tmp_path, monkeypatch):
  path = tmp_path / "probe_module.py"
  path.write_text(text)
  monkeypatch.setitem(MODULES, "avjax.probe_module", str(path))
  assert [t for t, _, _, _ in imports_of("avjax.probe_module")] == expected


def test_the_reader_tells_optional_imports(tmp_path, monkeypatch):
  path = tmp_path / "probe_module.py"
  path.write_text("try:\n  import tqdm\nexcept ImportError:\n  tqdm = None\nimport numpy\n")
  monkeypatch.setitem(MODULES, "avjax.probe_module", str(path))
  assert [(i.target, i.optional) for i in imports_of("avjax.probe_module")] == [
      ("tqdm", True), ("numpy", False)]


def test_importing_the_whole_package_installs_no_handler_and_loads_no_tensorflow():
  modules = sorted(m for m in MODULES if m.startswith(TF_FREE))
  code = ("import signal, sys\nbefore = signal.getsignal(signal.SIGTERM)\n"
          + "".join(f"import {m}\n" for m in modules)
          + "assert signal.getsignal(signal.SIGTERM) is before\n"
          "assert 'tensorflow' not in sys.modules, 'tensorflow'\n")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
