"""The discrepancy evaluation: S+/S-/S!= measures and the event probe on held-out titles.

Every snippet x_{n,m} of the held-out titles is embedded (centre crops, no augmentation)
into z_v = h_f(f(v)) and z_a = h_g(g(a)); the similarities are split into S+, S-, S!=
(paper Eq. 2, avjax.evals.measures) and their KLs computed, each with its noise floor
(avjax.evals.resampling: the KL at the same sample sizes under the null), and mean S+ -
mean S!= (and S+ - S-) with a bootstrap interval over held-out titles.

At the probe steps (the last of a run), linear probes (avjax.evals.probe) measure:
  event   top-1 event class on the pooled f, g (and z_v, z_a), fit on the training titles
          and scored on the held-out ones, when the dataset comes with a labels.json
          (synthetic data): what transfers;
  title   top-1 title id on the training titles' snippets, fit on each title's earlier
          snippets and scored on its later ones: how much content-exclusive information
          the features keep (paper Section 3's mechanism);
  genre   top-1 genre look of held-out titles (synthetic sets with genre looks), fit on the
          training titles: the title-level cues that generalise across titles;
each beside the same probe, same protocol, on the run's randomly initialised encoders
(its step-0 variables; "random"), and on those with their BatchNorm statistics recalibrated
on the probe's training snippets ("random_bn", the fair baseline: a trained model's
statistics come from data too), so that learning is read against the features' starting
point. With `input_probes`, the same probes on raw-input statistics of the same snippets
(avjax.evals.inputs) join them ("inputs").

The offline driver (avjax.evals.offline, python -m avjax.discrepancy) evaluates a workdir's
kept checkpoints, or its random initialisation alone into baseline.json.

Outputs in WORKDIR: discrepancy.json (one entry per step, merged into the file
atomically), TensorBoard scalars under "discrepancy/" and "probe/", discrepancy_hist.png
(the three densities of the latest step; per step in discrepancy/hist_step_N.png) and
discrepancy_curves.png (the divergences against training step, Figure 1 style).

The snippets come from a `data` object the caller gives (avjax.data.pipeline.EvalData):
this module reads no files of the dataset itself.
"""

import functools
import math
import os
import time

import jax
import ml_collections
from absl import logging

from avjax import fileio
from avjax.evals import embed
from avjax.evals import measures
from avjax.evals import plots
from avjax.evals import probe as probe_lib
from avjax.evals import resampling
from avjax.evals import summary
from avjax.models import av

RESULTS_FILE = "discrepancy.json"
BASELINE_FILE = "baseline.json"  # the run's random initialisation (evaluate_baseline)
HIST_FIGURE = "discrepancy_hist.png"
CURVES_FIGURE = "discrepancy_curves.png"
FIGURE_DIR = "discrepancy"


def default_config():
  """Options of the measures and the probe; a run's `config.discrepancy` overrides them."""
  return ml_collections.ConfigDict(dict(
      bins=50,
      smoothing=0.5,  # pseudo-counts per bin
      quantile=0.001,  # shared bins span the [q, 1 - q] quantiles of all similarities
      max_pairs=1_000_000,  # per set; larger sets are subsampled uniformly
      seed=0,
      eval_batch_size=0,  # 0: the training batch size
      labels="",  # labels.json for the probe; "": found next to the dataset's sources
      probe=True,
      probe_max_train_snippets=20_000,  # whole training titles, drawn by seed, up to this
      probe_l2=1e-3,
      probe_steps=500,
      probe_learning_rate=0.05,
      title_probe=True,  # the title-identity probe on the training titles' snippets
      random_init=True,  # every probe also on the run's step-0 (random) encoders
      random_bn=True,  # ... and on them with BatchNorm recalibrated on training snippets
      input_probes=False,  # the probes on raw-input statistics of the same snippets
      floor_rounds=20,  # random splits per KL noise floor (0: none)
      bootstrap_rounds=1000,  # title bootstrap replicates of the S+ gaps (0: none)
  ))


def options_from(config):
  """default_config() overridden by config.discrepancy (if the run config has one)."""
  options = default_config()
  for key, value in (config.get("discrepancy") or {}).items():
    options[key] = value
  return options


def eval_batch_size(config, options):
  """options.eval_batch_size (0: the training batch), rounded up to a multiple of devices."""
  b = int(options.eval_batch_size or config.batch_size)
  d = jax.device_count()
  return max(d, int(math.ceil(b / d)) * d)


# ---------------------------------------------------------------------------
# The probe.


FEATURES = (("video", "f"), ("audio", "g"), ("video_z", "z_video"), ("audio_z", "z_audio"))
PROBES = ("probe", "title_probe", "genre_probe")  # entry keys: event, title, genre look


# One compiled init (cached on disk with the compilation cache), not hundreds of eager ops;
# one jit for every call, so that an evaluation's second call with an equal model reuses it.
_init_variables = jax.jit(av.init_variables, static_argnums=(0, 2, 3))


def random_variables(model, config, batch):
  """The run's step-0 variables (av.init_variables with its seed): the random-init row."""
  shape = lambda x: (1,) + tuple(x.shape[1:])
  return jax.device_get(_init_variables(model, jax.random.key(int(config.seed)),
                                        shape(batch["video"]), shape(batch["audio"])))


def _features(embedded):
  """{name in the entry: features} of an embedding: f, g, z (and raw inputs, if there)."""
  out = {name: embedded[key] for name, key in FEATURES}
  out.update({k.split("/", 1)[1]: v for k, v in embedded.items() if k.startswith("input/")})
  return out


def _probe_all(train, held_out, targets, fit):
  """The three probes of every feature set of `train` / `held_out` embeddings.

  targets: dict(event=(y_train, y_test, classes) or None, genre=... or None).
  """
  tr, te = _features(train), _features(held_out)
  out = {"title_probe": {name: probe_lib.title_probe_accuracy(x, train["title_index"],
                                                              train["snippet_index"], **fit)
                         for name, x in tr.items()}}
  for key, target in (("probe", targets["event"]), ("genre_probe", targets["genre"])):
    if target is not None:
      y_train, y_test, classes = target
      out[key] = {name: probe_lib.probe_accuracy(tr[name], y_train, te[name], y_test,
                                                 classes, **fit) for name in tr}
  return out


def _targets(options, data, train, train_ids, held_out, held_out_iter):
  """Event and genre labels of the probe's snippets, with what describes them in the entry."""
  if options.labels and not os.path.exists(options.labels):
    raise FileNotFoundError(f"labels file {options.labels!r} (discrepancy.labels / "
                            "--labels) does not exist")
  path = options.labels or probe_lib.find_labels(held_out_iter.titles)
  if path is None:
    return dict(event=None, genre=None), {
        "probe": {"skipped": "no labels.json next to the dataset's sources (set "
                             "discrepancy.labels or --labels)"}}
  test_ids = list(held_out_iter.title_ids)
  events, num_classes = probe_lib.load_labels(path)
  y_train = probe_lib.labels_for(train_ids, train["title_index"], train["snippet_index"],
                                 events, data.snippet_seconds)
  y_test = probe_lib.labels_for(test_ids, held_out["title_index"], held_out["snippet_index"],
                                events, data.snippet_seconds)
  info = {"probe": dict(labels=os.path.abspath(path), num_classes=int(num_classes),
                        num_train=int((y_train >= 0).sum()), num_test=int((y_test >= 0).sum()),
                        majority=probe_lib.majority_accuracy(y_train, y_test))}
  targets = dict(event=(y_train, y_test, num_classes), genre=None)
  looks, num_looks = probe_lib.load_looks(path)
  if num_looks:
    g_train = probe_lib.title_labels(train_ids, train["title_index"], looks)
    g_test = probe_lib.title_labels(test_ids, held_out["title_index"], looks)
    targets["genre"] = (g_train, g_test, num_looks)
    info["genre_probe"] = dict(num_looks=int(num_looks),
                               majority=probe_lib.majority_accuracy(g_train, g_test))
  return targets, info


def probe_entry(model, variables, config, options, data, mesh, held_out, held_out_iter,
                batch_size):
  """entry["probe"] (event), entry["title_probe"] and entry["genre_probe"] of `variables`,
  each with its baseline rows ("random", "random_bn", "inputs") where options ask for them.

  `held_out` is the held-out embedding of `variables` (with its raw inputs when
  options.input_probes).
  """
  fit = dict(l2=options.probe_l2, steps=options.probe_steps,
             learning_rate=options.probe_learning_rate)
  probe_titles = functools.partial(data.training_titles, batch_size, seed=int(options.seed),
                                   max_snippets=int(options.probe_max_train_snippets))
  train_iter = probe_titles()
  train = embed.embed_iterator(model, variables, train_iter, mesh,
                               with_inputs=bool(options.input_probes),
                               desc="probe: embedding training titles")
  train_ids = list(train_iter.title_ids)
  targets, out = _targets(options, data, train, train_ids, held_out, held_out_iter)
  rows = {"": _probe_all(train, held_out, targets, fit)}
  if options.input_probes:
    rows["inputs"] = {key: {k: v for k, v in probes.items() if k not in dict(FEATURES)}
                      for key, probes in rows[""].items()}
  baselines = []
  if options.random_init or options.random_bn:
    start = random_variables(model, config, next(iter(data.held_out(batch_size))))
    if options.random_init:
      baselines.append(("random", start))
    if options.random_bn:
      calibrated = embed.recalibrate_batch_stats(model, start, probe_titles(), mesh)
      baselines.append(("random_bn", calibrated))
  for name, variables_ in baselines:
    rows[name] = _probe_all(
        embed.embed_iterator(model, variables_, probe_titles(), mesh, desc=f"probe: {name}"),
        embed.embed_iterator(model, variables_, data.held_out(batch_size), mesh,
                             desc=f"probe: {name}, held-out"), targets, fit)
  for key in PROBES:
    if key not in rows[""] or (key == "title_probe" and not options.title_probe):
      continue
    entry = dict(out.get(key, {}), **{name: rows[""][key][name] for name, _ in FEATURES})
    for name, row in rows.items():
      if name and key in row:
        entry[name] = {f: v for f, v in row[key].items() if name == "inputs" or
                       f in dict(FEATURES)}
    if key == "title_probe":
      entry.update(titles=len(train_ids), chance=1.0 / max(1, len(train_ids)))
    out[key] = entry
  return out


# ---------------------------------------------------------------------------
# One evaluation, results file, figures.


def evaluate_state(model, state, step, config, data, mesh, *, options=None, with_probe=True):
  """The measures (and probe) of `state` at `step`: (step entry, edges, masses)."""
  options = options or options_from(config)
  t0 = time.time()
  batch_size = eval_batch_size(config, options)
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  held_out_iter = data.held_out(batch_size)
  held_out = embed.embed_iterator(model, variables, held_out_iter, mesh,
                                  desc=f"discrepancy step {step}: embedding held-out titles",
                                  with_inputs=bool(with_probe and options.input_probes))
  pairs, info = measures.make_pairs(held_out["title_index"], max_pairs=int(options.max_pairs),
                                    seed=int(options.seed))
  sims = {n: measures.pair_similarities(held_out["z_video"], held_out["z_audio"], pairs[n])
          for n in measures.SETS}
  result, edges, mass = measures.measures(sims, bins=int(options.bins),
                                          smoothing=float(options.smoothing),
                                          quantile=float(options.quantile))
  entry = dict(step=int(step), **result, pairs=info, num_titles=len(held_out_iter.title_ids),
               num_snippets=int(len(held_out["title_index"])),
               hist=dict(lo=float(edges[0]), hi=float(edges[-1]), bins=len(edges) - 1,
                         smoothing=float(options.smoothing),
                         mass={n: [float(x) for x in mass[n]] for n in measures.SETS}))
  if options.floor_rounds:
    entry["kl_floor"] = resampling.kl_floors(
        held_out["z_video"], held_out["z_audio"], held_out["title_index"], pairs, edges,
        max_pairs=int(options.max_pairs), smoothing=float(options.smoothing),
        rounds=int(options.floor_rounds), seed=int(options.seed))
  if options.bootstrap_rounds:
    entry["separation"] = resampling.gap_intervals(sims, pairs, held_out["title_index"],
                                                   rounds=int(options.bootstrap_rounds),
                                                   seed=int(options.seed))
  if with_probe and options.probe:
    entry.update(probe_entry(model, variables, config, options, data, mesh, held_out,
                             held_out_iter, batch_size))
  entry["seconds"] = round(time.time() - t0, 2)
  return entry, edges, mass


def merge_results(path, entry, header):
  """Adds (or replaces) the entry of entry["step"] in the results file, atomically."""
  data = fileio.read_json(path) if os.path.exists(path) else {}
  data.update(header)
  steps = {int(e["step"]): e for e in data.get("steps", [])}
  old = steps.get(int(entry["step"]), {})
  for key in PROBES:  # a later measures-only pass keeps the probes
    if key in old and key not in entry:
      entry = dict(entry, **{key: old[key]})
  steps[int(entry["step"])] = entry
  data["steps"] = [steps[s] for s in sorted(steps)]
  if jax.process_index() == 0:
    fileio.write_json(path, data)
  return data


def _header(options):
  return dict(
      estimator=(f"histograms on {options.bins} shared equal-width bins over the "
                 f"[{options.quantile}, {1 - options.quantile}] quantiles of all similarities "
                 f"(outliers in the end bins), {options.smoothing} pseudo-counts per bin"),
      pairs=(f"ordered (video, audio) pairs; all of a set if at most {options.max_pairs}, "
             f"else {options.max_pairs} drawn uniformly with replacement (seed "
             f"{options.seed})"),
      bins=int(options.bins), smoothing=float(options.smoothing),
      max_pairs=int(options.max_pairs))


def scalars(entry):
  """TensorBoard scalars of a step entry."""
  out = {f"discrepancy/{k}": v for k, v in entry["kl"].items()}
  out["discrepancy/gap"] = entry["gap"]
  out.update({f"discrepancy/mean_{name}": entry["mean"][name] for name in measures.SETS})
  for name, floor in (entry.get("kl_floor") or {}).items():
    out[f"discrepancy/floor_{name}"] = floor["p95"]
  for name, interval in (entry.get("separation") or {}).items():
    if isinstance(interval, dict):
      out[f"discrepancy/{name}"] = interval["diff"]
  for group in PROBES:
    values = entry.get(group) or {}
    prefix = "probe/" if group == "probe" else f"{group}/"
    for key, _ in FEATURES:
      if key in values:
        out[prefix + key] = values[key]
      for baseline in ("random", "random_bn"):
        if key in (values.get(baseline) or {}):
          out[f"{prefix}{baseline}_{key}"] = values[baseline][key]
  return out


def write_outputs(workdir, entry, edges, mass, options, writer=None):
  """discrepancy.json, scalars, and the figures for one evaluated step."""
  data = merge_results(os.path.join(workdir, RESULTS_FILE), entry, _header(options))
  if writer is not None:
    writer.write_scalars(entry["step"], scalars(entry))
    writer.flush()
  if jax.process_index() == 0:
    title = f"{os.path.basename(os.path.normpath(workdir))}, step {entry['step']}"
    step_path = os.path.join(workdir, FIGURE_DIR, f"hist_step_{entry['step']}.png")
    for path in (step_path, os.path.join(workdir, HIST_FIGURE)):
      plots.plot_histograms(edges, mass, entry, path, title=title,
                            smoothing=float(options.smoothing))
    plots.plot_divergence_curves({"": data["steps"]}, os.path.join(workdir, CURVES_FIGURE),
                                 title=os.path.basename(os.path.normpath(workdir)))
  return data


def log_entry(entry):
  logging.info("discrepancy step %d: %s (%.1f s)", entry["step"], summary.short_line(entry),
               entry["seconds"])


class Evaluator:
  """The loop's periodic evaluation (`config.evals.discrepancy = N`): the measures every
  N steps, the probe joins at the last step of the schedule."""

  def __init__(self, *, every, model, config, data, mesh, workdir, writer, final_step):
    self.every = int(every)
    self.model, self.config, self.data, self.mesh = model, config, data, mesh
    self.workdir, self.writer, self.final_step = workdir, writer, int(final_step)
    self.options = options_from(config)

  def __call__(self, state, step):
    with_probe = bool(self.options.probe) and int(step) >= self.final_step
    entry, edges, mass = evaluate_state(self.model, state, step, self.config, self.data,
                                        self.mesh, options=self.options,
                                        with_probe=with_probe)
    write_outputs(self.workdir, entry, edges, mass, self.options, self.writer)
    log_entry(entry)
    return entry
