"""A sampling study, from its archive: per-run values, the planned comparisons, the verdicts.

launch/study_sampling.sh records every run and every seed's random-initialisation baseline
in the study's archive (avjax.evals.archive); everything here is a function of that file.

The plan (`plan`), fixed before the runs (docs/study_sampling.md, "Pre-registered plan"):
  primary     the event probe of f on held-out titles, k = K vs k = 1 at w = M_n (K the
              largest k of the study with w = M_n), paired by seed, two-sided paired t test
              at alpha = 0.05;
  family S1   the other settings on the primary endpoint, each against its reference
              (k > 1 at w = M_n: k = 1; a window or scene policy: the same k at w = M_n),
              Holm over the family;
  family S2   the secondary endpoints (SECONDARY) on the primary comparison, Holm over them;
  family L    every setting against the random initialisation with BatchNorm recalibrated,
              on the primary endpoint (does each setting learn?), Holm over the settings;
  the rest    every other comparison and endpoint, reported with unadjusted p (exploratory).
"""

import os
import platform

import numpy as np

from avjax import fileio
from avjax.evals import stats

PRIMARY = "event f"
SECONDARY = ("title f", "title g", "excess KL(S-||S!=)", "S+ - S!=", "event g", "loss")
EXPLORATORY = ("genre f", "genre g", "KL(S-||S+)", "KL(S!=||S+)", "KL(S-||S!=)", "gap")
BASELINE_ROWS = (("random", "random init (as initialised)"),
                 ("random_bn", "random init, BatchNorm recalibrated"))


# ---------------------------------------------------------------------------
# Settings, their names and the study's header.


def setting_name(k, w, scenes="none"):
  """k1, k16_wMn, k16_w16, k16_distinct: the archive's name of a sampling setting."""
  if scenes != "none":
    return f"k{k}_{scenes}"
  if k == 1:
    return "k1"
  return f"k{k}_wMn" if w in (-1, None) else f"k{k}_w{w}"


def setting_label(k, w, scenes="none"):
  if scenes != "none":
    return f"k={k}, {scenes} scenes"
  return "k=1" if k == 1 else f"k={k}, w={'M_n' if w in (-1, None) else w}"


def parse_setting(text):
  """"k:w[:scenes]" (launch/study_sampling.sh's SETTINGS) -> dict(k, w, scenes, name, label)."""
  parts = text.split(":")
  if len(parts) not in (2, 3):
    raise ValueError(f"setting {text!r}: expected k:w or k:w:scenes")
  k, w, scenes = int(parts[0]), int(parts[1]), (parts[2] if len(parts) == 3 else "none")
  return dict(k=k, w=w, scenes=scenes, name=setting_name(k, w, scenes),
              label=setting_label(k, w, scenes))


def header(*, dataset, synthetic, settings, seeds, steps, batch, lr, short_side, frames, hop,
           toy, preset, preset_args, name, inputs, data_seconds):
  """The archive's "study" record: what was run, on which data, and the inputs' ceiling."""
  from avjax.data import scene_sampling  # pylint: disable=g-import-not-at-top
  manifest = fileio.read_json(os.path.join(dataset, "manifest.json"))
  titles = manifest["titles"]
  split = {s: [t for t in titles if t["split"] == s] for s in ("train", "val")}
  lengths = [t["num_snippets"] for t in titles]
  labels = fileio.read_json(os.path.join(synthetic, "labels.json"))
  rows = []
  for text in settings:
    s = parse_setting(text)
    if s["scenes"] != "none":
      s["fallback_rate"] = scene_sampling.SceneSampler(
          [t["snippet_scenes"] for t in split["train"]], s["k"], s["scenes"]).fallback_rate
    rows.append(s)
  command = " ".join([f"python -m avjax.synthetic --preset={preset}"] + preset_args.split())
  description = (
      f"{'TOY SIZE (test only). ' if toy else ''}"
      f"Synthetic set: `{command}` ({len(titles)} titles, {len(labels['classes'])} event "
      f"classes, {len(labels.get('looks') or [])} genre looks, {min(lengths)}-{max(lengths)} "
      f"snippets per title), ingested at short side {short_side}; {len(split['train'])} "
      f"training titles ({sum(t['num_snippets'] for t in split['train'])} snippets), "
      f"{len(split['val'])} held-out titles ({sum(t['num_snippets'] for t in split['val'])} "
      f"snippets). Model: runlocal tiny R(2+1)D / ResNet audio encoders, d = 64, {frames} "
      f"frames, {short_side}x{short_side} crops, log-mel hop {hop}. Every run: batch B = "
      f"{batch}, {steps} steps of Adam (warm-up 1 epoch to {lr}, cosine); seeds "
      f"{seeds[0]}-{seeds[-1]} ({len(seeds)}).")
  out = dict(kind="study", name=name, preset=preset, command=command, description=description,
             heading="### Results" if name == "study_sampling" else f"### Results: {name}",
             settings=rows, seeds=list(seeds), steps=steps, batch=batch, lr=lr,
             machine=f"{os.cpu_count()}-core {platform.machine()} CPU",
             data_seconds=data_seconds)
  if inputs and os.path.exists(inputs):
    out["inputs"] = fileio.read_json(inputs)
  return out


# ---------------------------------------------------------------------------
# Values of a run.


def _probe(final, family, row=None, feature="video"):
  probe = final.get(family) or {}
  if row is not None:
    probe = probe.get(row) or {}
  value = probe.get(feature)
  return None if value is None else 100.0 * value


def run_values(final, losses=None):
  """The measures of one archived entry (a run's or a baseline's final), flat: name -> value.

  Probes in points (%); "excess KL(S-||S!=)" is the KL minus its noise floor; "loss" the mean
  over the last 10% of logged steps.
  """
  out = {}
  for family, name in (("probe", "event"), ("title_probe", "title"), ("genre_probe", "genre")):
    out[f"{name} f"] = _probe(final, family)
    out[f"{name} g"] = _probe(final, family, feature="audio")
  for kl, value in final["kl"].items():
    out[kl] = value
    floor = (final.get("kl_floor") or {}).get(kl)
    out[f"floor {kl}"] = floor
    out[f"excess {kl}"] = None if floor is None or value is None else value - floor
  out["gap"] = final.get("gap")
  sep = final.get("separation")
  out["S+ - S!="] = sep["diff"] if sep else None
  out["separated"] = None if not sep or sep["lo"] is None else float(sep["lo"] > 0)
  if losses:
    last = losses[-max(1, len(losses) // 10):]
    out["loss"] = float(np.mean([loss for _, loss in last]))
  return out


def baseline_values(final, row):
  """The probes of a baseline record's row: "" (the step-0 encoders as initialised),
  "random_bn" (recalibrated) or "inputs" (one feature set each, by name)."""
  if row == "":
    return run_values(final)
  out = {}
  for family, name in (("probe", "event"), ("title_probe", "title"), ("genre_probe", "genre")):
    rows = (final.get(family) or {}).get(row) or {}
    if row == "inputs":
      for feature, value in rows.items():
        out[f"{name} {feature}"] = 100.0 * value
    else:
      out[f"{name} f"] = _probe(final, family, row)
      out[f"{name} g"] = _probe(final, family, row, feature="audio")
  return out


def table(archive):
  """Per setting (in the header's order) and seed, the values: {setting: {seed: values}};
  the baseline rows as settings "random init" and "random init, BN recalibrated"."""
  header, runs, baselines = archive
  names = [s["name"] for s in (header or {}).get("settings", [])]
  names += sorted({r["setting"] for r in runs} - set(names))
  out = {name: {} for name in names}
  for r in runs:
    out[r["setting"]][r["seed"]] = run_values(r["final"], r.get("loss"))
  for row, label in BASELINE_ROWS:
    out[label] = {b["seed"]: baseline_values(b["final"], "" if row == "random" else row)
                  for b in baselines}
  out["raw inputs"] = {b["seed"]: baseline_values(b["final"], "inputs") for b in baselines}
  return out


# ---------------------------------------------------------------------------
# The plan and the tests.


def plan(settings):
  """The comparisons of a study: dict(primary, s1 [(a, b)], l [(a, reference)]), by name.

  settings: the header's settings (dicts with k, w, scenes, name).
  """
  by_name = {s["name"]: s for s in settings}
  full = [s for s in settings if s["scenes"] == "none" and s["w"] in (-1, None)]
  primary = None
  if "k1" in by_name:
    top = [s for s in full if s["k"] > 1]
    if top:
      primary = (max(top, key=lambda s: s["k"])["name"], "k1")
  s1 = []
  for s in settings:
    if s["name"] == "k1" or (primary and s["name"] == primary[0]):
      continue
    windowed = s["scenes"] != "none" or s["w"] not in (-1, None)
    reference = setting_name(s["k"], -1) if windowed else "k1"
    if reference in by_name:
      s1.append((s["name"], reference))
  learning = [(s["name"], BASELINE_ROWS[1][1]) for s in settings]
  return dict(primary=primary, s1=s1, l=learning)


def compare(values, a, b, endpoint):
  """The paired comparison of settings a and b on one endpoint (stats.paired)."""
  a_seeds, b_seeds = ({seed: v.get(endpoint) for seed, v in values.get(x, {}).items()}
                      for x in (a, b))
  return dict(stats.paired(a_seeds, b_seeds), a=a, b=b, endpoint=endpoint)


def analyse(archive, alpha=0.05):
  """Every test of the plan: dict(primary (or None), s1, s2, l, exploratory), each a list of
  comparison dicts (stats.paired plus a, b, endpoint, p_holm, reject)."""
  header = archive[0] or {}
  values = table(archive)
  p = plan(header.get("settings", []))
  out = dict(plan=p, values=values)
  def family(pairs, endpoints):
    return stats.holm_family([compare(values, a, b, e) for a, b in pairs for e in endpoints],
                             alpha)
  if p["primary"]:
    out["primary"] = family([p["primary"]], [PRIMARY])[0]  # a family of one: p_holm = p
    out["s2"] = family([p["primary"]], SECONDARY)
  else:
    out["primary"], out["s2"] = None, []
  out["s1"] = family(p["s1"], [PRIMARY])
  out["l"] = family(p["l"], [PRIMARY])
  pairs = ([p["primary"]] if p["primary"] else []) + p["s1"]
  out["exploratory"] = [compare(values, a, b, e) for a, b in pairs
                        for e in (PRIMARY,) + SECONDARY + EXPLORATORY
                        if not (p["primary"] and (a, b) == p["primary"] and
                                e in (PRIMARY,) + SECONDARY)
                        and not (e == PRIMARY and (a, b) in p["s1"])]
  return out


def verdict(test, *, expected_sign, alpha=0.05):
  """A claim's verdict from its test: "reproduced" (significant in the claimed direction),
  "reversed" (significant against it) or "not resolved" (not significant)."""
  if test is None or not np.isfinite(test.get("p_holm", test["p"])):
    return "not resolvable"
  if not test.get("reject", test["p"] <= alpha):
    return "not resolved"
  return "reproduced" if np.sign(test["diff"]) == expected_sign else "reversed"


def kl_above_floor(values, setting, name="KL(S-||S!=)"):
  """(runs whose KL is above its floor, runs) of a setting."""
  pairs = [(v.get(name), v.get(f"floor {name}")) for v in values.get(setting, {}).values()]
  pairs = [(x, f) for x, f in pairs if x is not None and f is not None]
  return sum(x > f for x, f in pairs), len(pairs)


def repeats_iid_groups(counts, k, w, batch_size, *, batches=2000, seed=0):
  """How often a batch of B / k i.i.d. groups (the law before batches kept titles distinct)
  repeats a snippet: (fraction of batches with a repeat, mean repeated snippets per batch).

  counts: M_n of the training titles. Drawn with the sampler's own two-stage law, each group
  a batch of its own (groups_per_batch=1), then taken B / k at a time.
  """
  from avjax.data import sampling  # pylint: disable=g-import-not-at-top
  sampler = sampling.HierarchicalSampler(counts, k, w, seed=seed)
  per_batch = batch_size // k
  with_repeat, repeated = 0, 0
  for b in range(batches):
    snippets = [(n, int(m)) for p in range(b * per_batch, (b + 1) * per_batch)
                for n, idx in [sampler.group(p)] for m in idx]
    extra = len(snippets) - len(set(snippets))
    with_repeat += extra > 0
    repeated += extra
  return with_repeat / batches, repeated / batches


def percent(endpoint):
  """Whether an endpoint is a probe's, in points (%) rather than a raw value."""
  return endpoint.split(" ")[0] in ("event", "title", "genre")
