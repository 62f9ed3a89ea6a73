"""The transfer table, from its archive: per-run top-1, the paired tests, the seeds needed,
and the report.

launch/transfer.sh fine-tunes (and linearly evaluates) f on the synthetic UCF101 and HMDB51
sets and g on the synthetic ESC-50 set, from scratch and from the exports of the sampling
study (docs/study_sampling.md), and records every finished run in the table's archive
(avjax.evals.archive: a header of kind "study", one record of kind "run" per fine-tuning
run, keyed by (setting, seed) with setting "<dataset>/<mode>/<init>"). Everything here is a
function of that file, the report too.

Arms are paired by seed: seed s fine-tunes the exports of the study's runs of seed s, and
the from-scratch arm, with fine-tuning seed s (initialisation, data order, augmentation).

The comparisons, each on every set and mode (`plan`), paired t tests (stats.paired):
  family T   does pretraining transfer? every pretrained setting against from scratch;
             Holm over the family (settings x sets x modes);
  family K   the paper's Table 1 downstream: k > 1 (w = M_n) against k = 1, and a window
             w < M_n against w = M_n at the same k; Holm over the family.

`write_report(archive_path, doc_path)` (python -m avjax.plots --transfer=ARCHIVE --doc=DOC)
replaces the block between the "transfer" markers of docs/downstream.md with the table in
the layout of the paper's Table 1 (rows the pretraining settings and from scratch, columns
HMDB51, ESC50, UCF101), once for fine-tuning and once for linear evaluation, and the paired
tests; the rest of the doc is kept.
"""

import os
import platform

import numpy as np

from avjax import fileio
from avjax.data import layouts
from avjax.evals import archive as archive_lib
from avjax.evals import stats
from avjax.evals import study
from avjax.evals import study_report

NAME = "transfer"
SCRATCH = "scratch"  # the init of the from-scratch arm
DATASETS = ("hmdb51", "esc50", "ucf101")  # the columns of the paper's Table 1, in its order
TITLES = {"hmdb51": "HMDB51", "esc50": "ESC50", "ucf101": "UCF101"}
MODES = ("finetune", "linear")
EFFECT = 5.0  # points: the difference the table is sized to resolve
POWER = 0.8


def setting(dataset, mode, init):
  """The archive's setting of a run: "<dataset>/<mode>/<init>", e.g. "ucf101/linear/k1"."""
  if dataset not in layouts.DATASETS or mode not in MODES:
    raise ValueError(f"dataset {dataset!r} / mode {mode!r}: expected one of "
                     f"{layouts.DATASETS} / {MODES}")
  return f"{dataset}/{mode}/{init}"


def parse_init(init):
  """(k, w, scenes) of a study setting's name (k1, k16_wMn, k16_w16, k16_distinct; w = -1
  for M_n), or None for scratch and other names."""
  head, _, rest = init[1:].partition("_") if init.startswith("k") else ("", "", "")
  if not head.isdigit():
    return None
  if rest in ("", "wMn"):
    return int(head), -1, "none"
  if rest.startswith("w") and rest[1:].isdigit():
    return int(head), int(rest[1:]), "none"
  return int(head), -1, rest


def init_label(init):
  """'from scratch', 'k=1', 'k=16, w=M_n', ... of an init's name."""
  if init == SCRATCH:
    return "from scratch"
  parsed = parse_init(init)
  return study.setting_label(*parsed) if parsed else init


# ---------------------------------------------------------------------------
# Records.


def run_record(results_path, *, dataset, mode, init, seed, export="", wall_seconds=None,
               cpu_seconds=None):
  """The archive record of a finished fine-tuning run (its WORKDIR/results.json)."""
  if not os.path.exists(results_path):
    raise FileNotFoundError(f"{results_path}: the run has no results to archive (not finished)")
  r = fileio.read_json(results_path)
  for key in ("dataset", "mode", "top1", "num_test"):
    if key not in r:
      raise ValueError(f"{results_path}: no {key!r}; not a fine-tuning results file")
  if (r["dataset"], r["mode"]) != (dataset, mode):
    raise ValueError(f"{results_path}: results of {r['dataset']}/{r['mode']}, recorded as "
                     f"{dataset}/{mode}")
  return dict(kind="run", setting=setting(dataset, mode, init), seed=int(seed),
              dataset=dataset, mode=mode, init=init, export=export,
              top1=r["top1"], view_top1=r.get("view_top1"), num_test=r["num_test"],
              num_train=r.get("num_train"), num_classes=r.get("num_classes"),
              split=r.get("split"), steps=r.get("step"), wall_seconds=wall_seconds,
              cpu_seconds=cpu_seconds)


def header(*, data, settings, seeds, sets, modes, overrides, schedule, shift, data_seconds=0):
  """The archive's header: what is compared, on which sets, with which schedule.

  data: {dataset: prepared dir}; settings: the study's setting names; schedule: a
  sentence stating the fine-tuning schedule; shift: the sets' distribution shift.
  """
  out_sets = {}
  for dataset in sets:
    manifest = fileio.read_json(os.path.join(data[dataset], "manifest.json"))
    split = manifest["splits"]["1"]
    out_sets[dataset] = dict(classes=len(manifest["classes"]), clips=len(manifest["clips"]),
                             train=len(split["train"]), test=len(split["test"]))
  return dict(kind="study", name=NAME, settings=list(settings), seeds=[int(s) for s in seeds],
              sets=out_sets, modes=list(modes), overrides=overrides, schedule=schedule,
              shift=shift, data_seconds=int(data_seconds),
              machine=f"{os.cpu_count()}-core {platform.machine()} CPU")


# ---------------------------------------------------------------------------
# Values and tests.


def table(runs):
  """{(dataset, mode): {init: {seed: top-1 in points}}} of the run records."""
  out = {}
  for r in runs:
    out.setdefault((r["dataset"], r["mode"]), {}).setdefault(r["init"], {})[r["seed"]] = (
        None if r.get("top1") is None else 100.0 * r["top1"])
  return out


def plan(inits):
  """The comparisons among `inits` (scratch and the study's setting names): (family T
  [(a, scratch)], family K [(a, b)])."""
  pretrained = [i for i in inits if i != SCRATCH]
  family_t = [(i, SCRATCH) for i in pretrained] if SCRATCH in inits else []
  family_k = []
  for i in pretrained:
    parsed = parse_init(i)
    if parsed is None:
      continue
    k, w, scenes = parsed
    if w == -1 and scenes == "none" and k > 1 and "k1" in inits:
      family_k.append((i, "k1"))
    elif (w != -1 or scenes != "none") and study.setting_name(k, -1) in inits:
      family_k.append((i, study.setting_name(k, -1)))
  return family_t, family_k


def compare(values, dataset, mode, a, b):
  """The paired comparison of inits a and b on one set and mode, with the seeds that would
  resolve EFFECT points at POWER (two-sided, alpha 0.05) given the observed spread."""
  cell = values.get((dataset, mode), {})
  out = dict(stats.paired(cell.get(a, {}), cell.get(b, {})), a=a, b=b, dataset=dataset,
             mode=mode, seeds_needed=None)
  if out["n"] >= 2 and np.isfinite(out["sd"]) and out["sd"] > 0:
    try:
      out["seeds_needed"] = stats.seeds_for_power(EFFECT, out["sd"], POWER)
    except ValueError:
      pass  # more seeds than seeds_for_power tries: None
  return out


def analyse(archive, alpha=0.05):
  """dict(values, inits, t (family T), k (family K)): every planned test, Holm per family."""
  header, runs, _ = archive
  values = table(runs)
  names = [SCRATCH] + list((header or {}).get("settings", []))  # the arms in table order
  names += sorted({r["init"] for r in runs} - set(names))
  inits = [i for i in names if any(i in cell for cell in values.values())]
  family_t, family_k = plan(inits)
  cells = [(d, m) for m in MODES for d in DATASETS if (d, m) in values]
  def tests(pairs):
    return stats.holm_family([compare(values, d, m, a, b) for d, m in cells for a, b in pairs],
                             alpha)
  return dict(values=values, inits=inits, cells=cells, t=tests(family_t), k=tests(family_k))


# ---------------------------------------------------------------------------
# The report.

BEGIN = "<!-- {name}:begin (generated by python -m avjax.plots --transfer) -->"
END = study_report.END
MODE_TITLES = {"finetune": "fine-tuning", "linear": "linear evaluation (frozen backbone)"}
ENCODER = {"hmdb51": "f", "ucf101": "f", "esc50": "g"}

_num = study_report.num
_p = study_report.p_text
_ci_cell = study_report.ci_cell


def _cell(seeds):
  n = stats.mean_ci(seeds.values())[2]
  return f"{_ci_cell(seeds.values(), 1)} ({n})" if n else "–"


def table1(result, mode):
  """Top-1 % in the layout of the paper's Table 1: mean ± 95% t interval over seeds (n)."""
  head = "| pretraining | " + " | ".join(f"{TITLES[d]} ({ENCODER[d]})" for d in DATASETS) + " |"
  lines = [head, "|---|" + "---:|" * len(DATASETS)]
  for init in result["inits"]:
    cells = [_cell(result["values"].get((d, mode), {}).get(init, {})) for d in DATASETS]
    lines.append(f"| {init_label(init)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def tests_table(tests):
  """One row per paired comparison: a − b with its 95% interval, p, Holm, seeds needed."""
  head = ("| comparison | set | mode | n | mean a | mean b | a − b [95% CI] | sd of a − b | "
          "p | p (Holm) | decision | seeds for 5 points |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for t in tests:
    cells = [f"{init_label(t['a'])} − {init_label(t['b'])}",
             TITLES[t["dataset"]], t["mode"], str(t["n"]), _num(t["mean_a"], 1),
             _num(t["mean_b"], 1),
             f"{_num(t['diff'], 1)} [{_num(t['lo'], 1)}, {_num(t['hi'], 1)}]",
             _num(t["sd"], 1), _p(t["p"]), _p(t.get("p_holm")),
             stats.decision(t),
             "–" if t.get("seeds_needed") is None else str(t["seeds_needed"])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _tests(tests):
  return f"{len(tests)} test{'' if len(tests) == 1 else 's'}"


def _description(header):
  sets = header.get("sets", {})
  parts = [f"{TITLES.get(d, d)} {s['classes']} classes, {s['train']} train / "
           f"{s['test']} test clips" for d, s in sets.items()]
  seeds = header.get("seeds", [])
  return (f"Sets (split 1): {'; '.join(parts)}. Shift: {header.get('shift', '?')}. "
          f"Schedule: {header.get('schedule', '?')}. Seeds: "
          f"{', '.join(str(s) for s in seeds) or '–'} ({len(seeds)}), the same pretraining "
          "and fine-tuning seed in every arm.")


def block_lines(archive_path, doc_path, archive):
  """The lines of the generated block (between the markers)."""
  header, runs, _ = archive
  arch = os.path.relpath(archive_path, os.path.dirname(os.path.abspath(doc_path)))  # from the doc
  given = os.path.relpath(archive_path) if os.path.isabs(archive_path) else archive_path
  if given.startswith(".."):  # the command as it runs from here
    given = os.path.abspath(archive_path)
  lines = [BEGIN.format(name=NAME), ""]
  if header is None or not runs:
    lines += [f"No runs are recorded yet in [`{os.path.basename(archive_path)}`]({arch}): "
              "`bash launch/transfer.sh` fills it (see the commands above), and "
              f"`python -m avjax.plots --transfer={given} --doc=...` rewrites this section "
              "from it alone.", "", END.format(name=NAME)]
    return lines, None
  result = analyse(archive)
  lines += [_description(header), "",
            f"Every number below comes from the archive [`{os.path.basename(archive_path)}`]"
            f"({arch}) (one JSON line per fine-tuning run); `python -m avjax.plots "
            f"--transfer={given} --doc=...` regenerates this section from it alone.", ""]
  for mode in MODES:
    if any(m == mode for _, m in result["cells"]):
      lines += [f"**Top-1 % after {MODE_TITLES[mode]}** (mean ± 95% t interval over seeds, "
                "seeds in brackets), in the layout of the paper's Table 1:", "",
                table1(result, mode), ""]
  if result["t"]:
    lines += ["**Does pretraining transfer?** (family T, Holm over its "
              f"{_tests(result['t'])}): each pretrained setting against from scratch, "
              "paired by seed; seeds for 5 points: the seeds a paired t test needs to "
              "resolve a 5-point difference with 80% power at the observed spread.", "",
              tests_table(result["t"]), ""]
  if result["k"]:
    lines += ["**Does the sampling setting show downstream?** (family K, Holm over its "
              f"{_tests(result['k'])}): the paper's Table 1 comparisons, k > 1 against "
              "k = 1 at w = M_n, and a window against w = M_n at the same k.", "",
              tests_table(result["k"]), ""]
  planned = len(header.get("seeds", []))
  partial = [f"{TITLES[d]} {m} {init_label(i)} ({len(s)} of {planned})"
             for (d, m), cell in sorted(result["values"].items()) for i, s in cell.items()
             if len(s) < planned]
  if partial:
    lines += [f"**Partial results**: seeds done: {', '.join(partial)}.", ""]
  cpu = [r["cpu_seconds"] for r in runs if r.get("cpu_seconds")]
  wall = [r["wall_seconds"] for r in runs if r.get("wall_seconds")]
  if cpu:
    lines += [f"Compute: {len(runs)} runs; per run {_num(np.mean(cpu), 0)} CPU s and "
              f"{_num(np.mean(wall) if wall else None, 0)} s of wall time on average "
              f"({header.get('machine', 'this machine')}; a process runs the sets of one arm, "
              "seed and mode, and its time is split evenly among them)"
              + (f"; data preparation {header['data_seconds'] / 60:.1f} min"
                 if header.get("data_seconds") else "") + ".", ""]  # 0: made in another sitting
  lines.append(END.format(name=NAME))
  return lines, result


def write_report(archive_path, doc_path):
  """Rewrites the doc's transfer block from the archive; returns the analysis (or None when
  no run is recorded yet)."""
  archive = archive_lib.load(archive_path)
  lines, result = block_lines(archive_path, doc_path, archive)
  study_report.replace_block(doc_path, "\n".join(lines), NAME, begin=BEGIN, end=END,
                             title="# Downstream evaluation")
  return result


def summary_lines(result):
  """A few lines for the console: each significant test and its interval."""
  if result is None:
    return ["no runs recorded yet"]
  out = [f"{TITLES[t['dataset']]:6s} {t['mode']:8s} "
         f"{init_label(t['a'])} − {init_label(t['b'])}: "
         f"{_num(t['diff'], 1)} [{_num(t['lo'], 1)}, {_num(t['hi'], 1)}] "
         f"(n {t['n']}, p {_p(t['p'])}, Holm {_p(t.get('p_holm'))})"
         for t in result["t"] + result["k"]]
  return out or ["no paired comparison yet"]
