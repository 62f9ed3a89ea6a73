"""The discrepancy evaluation: S+/S-/S!= measures and the event probe on held-out titles.

Every snippet x_{n,m} of the held-out titles is embedded (centre crops, no augmentation)
into z_v = h_f(f(v)) and z_a = h_g(g(a)); the similarities are split into S+, S-, S!=
(paper Eq. 2, avjax.evals.measures) and their KLs computed. A linear probe
(avjax.evals.probe) adds top-1 event-class accuracy on the pooled f and g features (and
on z_v, z_a), trained on the training titles and scored on the held-out ones, when the
dataset comes with a labels.json (synthetic data).

Outputs in WORKDIR: discrepancy.json (one entry per step, merged into the file
atomically), TensorBoard scalars under "discrepancy/" and "probe/", discrepancy_hist.png
(the three densities of the latest step; per step in discrepancy/hist_step_N.png) and
discrepancy_curves.png (the divergences against training step, Figure 1 style).

The snippets come from a `data` object the caller gives (the pretraining task's
avjax.pretrain.EvalData): this module reads no files of the dataset itself.
"""

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

RESULTS_FILE = "discrepancy.json"
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


def _variables(state):
  return {"params": state["params"], "batch_stats": state["batch_stats"]}


# ---------------------------------------------------------------------------
# The probe.


def _labels_path(options, titles):
  if options.labels:
    if not os.path.exists(options.labels):
      raise FileNotFoundError(f"labels file {options.labels!r} (discrepancy.labels / "
                              "--labels) does not exist")
    return options.labels
  return probe_lib.find_labels(titles)


def run_probe(model, state, options, data, mesh, held_out, held_out_iter, batch_size):
  """Top-1 accuracy of linear probes on f, g, z_v, z_a; or {"skipped": reason}."""
  path = _labels_path(options, held_out_iter.titles)
  if path is None:
    return {"skipped": "no labels.json next to the dataset's sources (set "
                       "discrepancy.labels or --labels)"}
  events, num_classes = probe_lib.load_labels(path)
  train_iter = data.training_titles(batch_size, seed=int(options.seed),
                                    max_snippets=int(options.probe_max_train_snippets))
  train = embed.embed_iterator(model, _variables(state), train_iter, mesh,
                               desc="probe: embedding training titles")
  y_train = probe_lib.labels_for(list(train_iter.title_ids), train["title_index"],
                                 train["snippet_index"], events, data.snippet_seconds)
  y_test = probe_lib.labels_for(list(held_out_iter.title_ids), held_out["title_index"],
                                held_out["snippet_index"], events, data.snippet_seconds)
  fit = dict(l2=options.probe_l2, steps=options.probe_steps,
             learning_rate=options.probe_learning_rate)
  out = dict(labels=os.path.abspath(path), num_classes=int(num_classes),
             num_train=int((y_train >= 0).sum()), num_test=int((y_test >= 0).sum()),
             majority=probe_lib.majority_accuracy(y_train, y_test))
  for name, key in (("video", "f"), ("audio", "g"), ("video_z", "z_video"),
                    ("audio_z", "z_audio")):
    out[name] = probe_lib.probe_accuracy(train[key], y_train, held_out[key], y_test,
                                         num_classes, **fit)
  return out


# ---------------------------------------------------------------------------
# One evaluation, results file, figures.


def evaluate_state(model, state, step, config, data, mesh, *, options=None, with_probe=True):
  """The measures (and probe) of `state` at `step`: (step entry, edges, masses)."""
  options = options or options_from(config)
  t0 = time.time()
  batch_size = eval_batch_size(config, options)
  held_out_iter = data.held_out(batch_size)
  held_out = embed.embed_iterator(model, _variables(state), held_out_iter, mesh,
                                  desc=f"discrepancy step {step}: embedding held-out titles")
  pairs, info = measures.make_pairs(held_out["title_index"], max_pairs=int(options.max_pairs),
                                    seed=int(options.seed))
  sims = {n: measures.pair_similarities(held_out["z_video"], held_out["z_audio"], pairs[n])
          for n in measures.SETS}
  result, edges, mass = measures.measures(sims, bins=int(options.bins),
                                          smoothing=float(options.smoothing),
                                          quantile=float(options.quantile))
  entry = dict(step=int(step), **result, pairs=info, num_titles=len(held_out_iter.title_ids),
               num_snippets=int(len(held_out["title_index"])))
  if with_probe and options.probe:
    entry["probe"] = run_probe(model, state, options, data, mesh, held_out, held_out_iter,
                               batch_size)
  entry["seconds"] = round(time.time() - t0, 2)
  return entry, edges, mass


def merge_results(path, entry, header):
  """Adds (or replaces) the entry of entry["step"] in the results file, atomically."""
  data = fileio.read_json(path) if os.path.exists(path) else {}
  data.update(header)
  steps = {int(e["step"]): e for e in data.get("steps", [])}
  old = steps.get(int(entry["step"]), {})
  if "probe" in old and "probe" not in entry:
    entry = dict(entry, probe=old["probe"])  # a later measures-only pass keeps the probe
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
  for name in measures.SETS:
    out[f"discrepancy/mean_{name}"] = entry["mean"][name]
  probe = entry.get("probe") or {}
  for key in ("video", "audio", "video_z", "audio_z"):
    if key in probe:
      out[f"probe/{key}"] = probe[key]
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
  kl = "  ".join(f"{k} {v:.3f}" for k, v in entry["kl"].items())
  probe = entry.get("probe") or {}
  extra = ""
  if "video" in probe:
    extra = f"  probe f {probe['video']:.3f} g {probe['audio']:.3f}"
  logging.info("discrepancy step %d: %s  gap %.3f%s (%.1f s)", entry["step"], kl, entry["gap"],
               extra, entry["seconds"])


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
