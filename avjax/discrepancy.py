r"""Discrepancy measures of paper Section 3 (Eq. 2) and a linear probe, on held-out titles.

  python -m avjax.discrepancy --workdir=runs/k16 [--step=N | --all_steps] [--max_pairs=1000000]

For a pretraining workdir (config from WORKDIR/config.json, weights from its checkpoint),
every snippet x_{n,m} of the held-out titles is embedded (pipeline eval mode: centre crops,
no augmentation) into z_v = h_f(f(v)) and z_a = h_g(g(a)), and the audio-visual
similarities s = (z_v^{n,m})^T z_a^{n',m'} are split as in Eq. 2:

  S+   same snippet              n = n', m = m'
  S-   same title, other snippet n = n', m != m'
  S!=  different titles          n != n'

Pairs are ordered (video of one snippet, audio of another). Every pair is used while a
set has at most `max_pairs` of them; a larger set is replaced by `max_pairs` pairs drawn
uniformly from it, with replacement, by a fixed seed (`sample_pairs`). The three densities
are histograms on shared bins: `bins` equal-width bins between the 0.1% and 99.9%
quantiles of all similarities pooled (values outside fall into the end bins), with
`smoothing` pseudo-counts added to every bin (0.5: the Krichevsky-Trofimov estimator),
which keeps every KL finite. Reported: KL(S-||S+), KL(S!=||S+), KL(S-||S!=) and the gap
KL(S!=||S+) - KL(S-||S+) (Section 3: under i.i.d. titles KL(S-||S!=) ~ 0 and the gap ~ 0;
k > 1 should shrink both).

Outputs in WORKDIR: discrepancy.json (one entry per step, merged into the file
atomically), TensorBoard scalars under "discrepancy/", discrepancy_hist.png (the three
densities of the latest step; per step in discrepancy/hist_step_N.png) and
discrepancy_curves.png (the divergences against training step, Figure 1 style).

A linear probe (avjax/probe.py) adds top-1 event-class accuracy of logistic regression
on the pooled f and g features (and on z_v, z_a), trained on the training titles and
scored on the held-out ones, when the dataset comes with a labels.json (synthetic data).

During training, `config.evals.discrepancy = N` runs `evaluate` every N steps and at the
end (the probe only at the last step), so one run yields the curves of Figure 1.
"""

import functools
import math
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from avjax import fileio
from avjax import probe as probe_lib
from avjax import sharding
from avjax.models import heads

RESULTS_FILE = "discrepancy.json"
HIST_FIGURE = "discrepancy_hist.png"
CURVES_FIGURE = "discrepancy_curves.png"
FIGURE_DIR = "discrepancy"

SETS = ("S+", "S-", "S!=")
# (p, q) of each KL(p || q) reported, in the paper's order.
DIVERGENCES = (("S-", "S+"), ("S!=", "S+"), ("S-", "S!="))


def kl_name(p, q):
  return f"KL({p}||{q})"


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


# ---------------------------------------------------------------------------
# Pairs (Eq. 2).


def pair_counts(title_index):
  """Number of ordered (video, audio) pairs in S+, S- and S!= for snippets of these titles."""
  _, m = np.unique(np.asarray(title_index), return_counts=True)
  m = m.astype(np.int64)
  total = int(m.sum())
  return {"S+": total, "S-": int((m * (m - 1)).sum()), "S!=": int(total * total - (m * m).sum())}


def all_pairs(title_index):
  """Every ordered pair (i, j) of rows, by set: {name: (i [P], j [P])}."""
  t = np.asarray(title_index)
  i, j = np.meshgrid(np.arange(len(t)), np.arange(len(t)), indexing="ij")
  i, j = i.ravel(), j.ravel()
  same_title, same_row = t[i] == t[j], i == j
  return {"S+": (i[same_row], j[same_row]),
          "S-": (i[same_title & ~same_row], j[same_title & ~same_row]),
          "S!=": (i[~same_title], j[~same_title])}


def sample_pairs(title_index, name, num, rng):
  """`num` ordered pairs drawn uniformly (with replacement) from set `name` without listing it.

  S-: a title with probability proportional to M_n (M_n - 1), then two distinct snippets of
  it. S!=: a row i with probability proportional to (M - M_{n(i)}), then a row j uniformly
  among the other titles' rows. Both are exactly uniform over the set's ordered pairs.
  """
  t = np.asarray(title_index)
  order = np.argsort(t, kind="stable")
  titles, first, m = np.unique(t[order], return_index=True, return_counts=True)
  del titles
  if name == "S+":
    i = rng.integers(len(t), size=num)
    return i, i
  if name == "S-":
    weights = (m * (m - 1)).astype(np.float64)
    n = rng.choice(len(m), size=num, p=weights / weights.sum())
    a = rng.integers(m[n])
    b = rng.integers(m[n] - 1)
    b = b + (b >= a)  # distinct from a
    return order[first[n] + a], order[first[n] + b]
  if name == "S!=":
    title_of_row = np.searchsorted(first, np.arange(len(t)), side="right") - 1  # in sorted order
    weights = (len(t) - m[title_of_row]).astype(np.float64)
    rows = rng.choice(len(t), size=num, p=weights / weights.sum())
    n = title_of_row[rows]
    # j uniform over sorted positions outside title n's block [first[n], first[n] + m[n]).
    r = rng.integers(len(t) - m[n])
    cols = np.where(r < first[n], r, r + m[n])
    return order[rows], order[cols]
  raise ValueError(f"unknown pair set {name!r}; expected one of {SETS}")


def make_pairs(title_index, *, max_pairs, seed=0):
  """{name: (i, j)} and {name: dict(total, used, sampled)} for S+, S-, S!=."""
  counts = pair_counts(title_index)
  rng = np.random.default_rng([int(seed), 0xD15C])
  everything = None
  pairs, info = {}, {}
  for name in SETS:
    if counts[name] <= max_pairs:
      if everything is None:
        everything = all_pairs(title_index)
      pairs[name] = everything[name]
    else:
      pairs[name] = sample_pairs(title_index, name, int(max_pairs), rng)
    info[name] = dict(total=counts[name], used=int(len(pairs[name][0])),
                      sampled=counts[name] > max_pairs)
  return pairs, info


def pair_similarities(z_video, z_audio, pairs, *, chunk=1 << 20):
  """s = z_v[i] . z_a[j] for each pair, float64."""
  i, j = pairs
  out = np.empty(len(i), np.float64)
  for s in range(0, len(i), chunk):
    a, b = z_video[i[s:s + chunk]], z_audio[j[s:s + chunk]]
    out[s:s + chunk] = np.einsum("pd,pd->p", a.astype(np.float64), b.astype(np.float64))
  return out


# ---------------------------------------------------------------------------
# Densities and divergences.


def shared_edges(samples, bins, quantile=0.0):
  """`bins` + 1 equal-width edges spanning the [q, 1 - q] quantiles of all samples pooled."""
  pooled = np.concatenate([np.asarray(s, np.float64).ravel() for s in samples])
  if not len(pooled):
    raise ValueError("no similarities to bin")
  lo, hi = np.quantile(pooled, [quantile, 1 - quantile]) if quantile else (pooled.min(),
                                                                            pooled.max())
  if not hi > lo:
    lo, hi = lo - 0.5, hi + 0.5
  return np.linspace(lo, hi, int(bins) + 1)


def histogram_mass(samples, edges, smoothing=0.5):
  """Probability mass per bin with `smoothing` pseudo-counts per bin; values outside the
  edges count in the end bins."""
  x = np.clip(np.asarray(samples, np.float64), edges[0], edges[-1])
  counts, _ = np.histogram(x, bins=edges)
  counts = counts.astype(np.float64) + smoothing
  return counts / counts.sum()


def kl_divergence(p, q):
  """KL(p || q) of two probability mass vectors on the same bins (0 log 0 = 0)."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  if p.shape != q.shape:
    raise ValueError(f"KL of masses on different bins: {p.shape} vs {q.shape}")
  live = p > 0
  if np.any(q[live] <= 0):
    return float("inf")
  return float(np.sum(p[live] * np.log(p[live] / q[live])))


def measures(similarities, *, bins=50, smoothing=0.5, quantile=0.001):
  """Divergences of Section 3 from the similarity samples of S+, S-, S!=.

  Returns (result dict, edges, {name: mass}); the result holds the three KLs, the gap
  KL(S!=||S+) - KL(S-||S+), and each set's mean and std.
  """
  # A set can be empty (one held-out title: no S!=; one snippet per title: no S-); its
  # divergences are then NaN.
  live = [n for n in SETS if len(similarities[n])]
  edges = shared_edges([similarities[n] for n in live], bins, quantile)
  mass = {n: histogram_mass(similarities[n], edges, smoothing) if n in live
          else np.full(len(edges) - 1, np.nan) for n in SETS}
  kl = {kl_name(p, q): kl_divergence(mass[p], mass[q]) if p in live and q in live
        else float("nan") for p, q in DIVERGENCES}
  stat = lambda fn, n: float(fn(similarities[n])) if n in live else float("nan")
  result = dict(
      kl=kl,
      gap=kl[kl_name("S!=", "S+")] - kl[kl_name("S-", "S+")],
      mean={n: stat(np.mean, n) for n in SETS},
      std={n: stat(np.std, n) for n in SETS},
  )
  return result, edges, mass


# ---------------------------------------------------------------------------
# Embedding held-out snippets.


def _embed(module, video, audio):
  """Pooled f, g and the head outputs z_v, z_a; each encoder runs once."""
  fmap_v = module.video_encoder(video, train=False)
  fmap_a = module.audio_encoder(audio, train=False)
  return dict(f=heads.global_average_pool(fmap_v), g=heads.global_average_pool(fmap_a),
              z_video=module.video_head(fmap_v, train=False),
              z_audio=module.audio_head(fmap_a, train=False))


@functools.partial(jax.jit, static_argnames=("model",))
def _embed_batch(variables, video, audio, *, model):
  return model.apply(variables, video, audio, method=_embed)


def _gather(x):
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def embed_iterator(model, variables, iterator, mesh):
  """Runs every batch of an eval iterator through f, g and the heads.

  Returns a dict of numpy arrays over the real (unmasked) snippets: f, g, z_video, z_audio
  [S, ...], title_index, snippet_index [S].
  """
  variables = jax.device_put(variables, sharding.replicated(mesh))
  parts = {}
  for batch in iterator:
    batch = sharding.host_to_global(batch, mesh)
    out = _embed_batch(variables, batch["video"], batch["audio"], model=model)
    out.update(title_index=batch["title_index"], snippet_index=batch["snippet_index"],
               mask=batch["mask"])
    for key, value in out.items():
      parts.setdefault(key, []).append(_gather(value))
  if not parts:
    raise ValueError("the eval iterator yielded no batches (no held-out snippets)")
  out = {k: np.concatenate(v) for k, v in parts.items()}
  keep = out.pop("mask").astype(bool)
  return {k: v[keep] for k, v in out.items()}


def _eval_batch_size(config, options):
  b = int(options.eval_batch_size or config.batch_size)
  d = jax.device_count()
  return max(d, int(math.ceil(b / d)) * d)


def _variables(state):
  return {"params": state["params"], "batch_stats": state["batch_stats"]}


def embed_held_out(model, state, config, options, mesh):
  """Embeddings of every snippet of the held-out titles (config.data.eval_split)."""
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  iterator = pipeline.make_eval_iterator(config.data, batch_size=_eval_batch_size(config,
                                                                                 options))
  out = embed_iterator(model, _variables(state), iterator, mesh)
  return out, list(iterator.title_ids), iterator.titles


def embed_training_titles(model, state, config, options, mesh):
  """Embeddings of the training titles' snippets for the probe: whole titles drawn by seed
  until `probe_max_train_snippets` (all titles if they fit)."""
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  manifest = pipeline.load_manifest(config.data.dataset)
  titles = pipeline.select_titles(manifest, config.data, budget=0)
  rng = np.random.default_rng([int(options.seed), 0x9B0B])
  chosen, total = [], 0
  for n in rng.permutation(len(titles)):
    if chosen and total + titles[n]["num_snippets"] > options.probe_max_train_snippets:
      continue
    chosen.append(int(n))
    total += titles[n]["num_snippets"]
  titles = [titles[n] for n in sorted(chosen)]
  iterator = pipeline.EvalIterator(
      config.data, titles, manifest["params"],
      global_batch_size=_eval_batch_size(config, options), process_index=jax.process_index(),
      process_count=jax.process_count(), num_local_devices=jax.local_device_count())
  return embed_iterator(model, _variables(state), iterator, mesh), list(iterator.title_ids)


# ---------------------------------------------------------------------------
# The probe.


def _labels_path(config, options, titles):
  if options.labels:
    if not os.path.exists(options.labels):
      raise FileNotFoundError(f"labels file {options.labels!r} (discrepancy.labels / "
                              "--labels) does not exist")
    return options.labels
  return probe_lib.find_labels(titles)


def run_probe(model, state, config, options, mesh, held_out, held_out_ids, held_out_titles):
  """Top-1 accuracy of linear probes on f, g, z_v, z_a; or {"skipped": reason}."""
  path = _labels_path(config, options, held_out_titles)
  if path is None:
    return {"skipped": "no labels.json next to the dataset's sources (set "
                       "discrepancy.labels or --labels)"}
  events, num_classes = probe_lib.load_labels(path)
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  fmt = pipeline.load_manifest(config.data.dataset)["params"]
  seconds = float(fmt["frames_per_snippet"]) / float(fmt["fps"])
  train, train_ids = embed_training_titles(model, state, config, options, mesh)
  y_train = probe_lib.labels_for(train_ids, train["title_index"], train["snippet_index"],
                                 events, seconds)
  y_test = probe_lib.labels_for(held_out_ids, held_out["title_index"],
                                held_out["snippet_index"], events, seconds)
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


def evaluate_state(model, state, step, config, *, options=None, mesh=None, with_probe=True):
  """The measures (and probe) of `state` at `step`: (step entry, edges, masses)."""
  options = options or options_from(config)
  mesh = mesh or sharding.make_mesh()
  t0 = time.time()
  held_out, ids, titles = embed_held_out(model, state, config, options, mesh)
  pairs, info = make_pairs(held_out["title_index"], max_pairs=int(options.max_pairs),
                           seed=int(options.seed))
  sims = {n: pair_similarities(held_out["z_video"], held_out["z_audio"], pairs[n])
          for n in SETS}
  result, edges, mass = measures(sims, bins=int(options.bins), smoothing=float(options.smoothing),
                                 quantile=float(options.quantile))
  entry = dict(step=int(step), **result, pairs=info, num_titles=len(ids),
               num_snippets=int(len(held_out["title_index"])))
  if with_probe and options.probe:
    entry["probe"] = run_probe(model, state, config, options, mesh, held_out, ids, titles)
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
  for name in SETS:
    out[f"discrepancy/mean_{name}"] = entry["mean"][name]
  probe = entry.get("probe") or {}
  for key in ("video", "audio", "video_z", "audio_z"):
    if key in probe:
      out[f"probe/{key}"] = probe[key]
  return out


def write_outputs(workdir, entry, edges, mass, options, writer=None):
  """discrepancy.json, scalars, and the figures for one evaluated step."""
  from avjax import plots  # pylint: disable=g-import-not-at-top
  data = merge_results(os.path.join(workdir, RESULTS_FILE), entry, _header(options))
  if writer is not None:
    writer.write_scalars(entry["step"], scalars(entry))
    writer.flush()
  if jax.process_index() == 0:
    title = f"{os.path.basename(os.path.normpath(workdir))}, step {entry['step']}"
    step_path = os.path.join(workdir, FIGURE_DIR, f"hist_step_{entry['step']}.png")
    plots.plot_histograms(edges, mass, entry, step_path, title=title)
    plots.plot_histograms(edges, mass, entry, os.path.join(workdir, HIST_FIGURE), title=title)
    plots.plot_divergence_curves({"": data["steps"]}, os.path.join(workdir, CURVES_FIGURE),
                                 title=os.path.basename(os.path.normpath(workdir)))
  return data


def _log(entry):
  kl = "  ".join(f"{k} {v:.3f}" for k, v in entry["kl"].items())
  probe = entry.get("probe") or {}
  extra = ""
  if "video" in probe:
    extra = f"  probe f {probe['video']:.3f} g {probe['audio']:.3f}"
  logging.info("discrepancy step %d: %s  gap %.3f%s (%.1f s)", entry["step"], kl, entry["gap"],
               extra, entry["seconds"])


# ---------------------------------------------------------------------------
# The trainer's periodic hook.


def _final_step(config):
  if config.get("total_steps", 0):
    return int(config.total_steps)
  from avjax import train  # pylint: disable=g-import-not-at-top
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from avjax.data import sampling  # pylint: disable=g-import-not-at-top
  titles = pipeline.select_titles(pipeline.load_manifest(config.data.dataset), config.data)
  sampler = sampling.HierarchicalSampler([t["num_snippets"] for t in titles], config.data.k,
                                         config.data.w)
  return train.total_steps(config, sampler.snippets_per_epoch)


def evaluate(model, state, step, *, config, workdir, writer):
  """`config.evals.discrepancy = N`: measures every N steps; the probe joins at the end."""
  options = options_from(config)
  with_probe = bool(options.probe) and int(step) >= _final_step(config)
  entry, edges, mass = evaluate_state(model, state, step, config, options=options,
                                      with_probe=with_probe)
  write_outputs(workdir, entry, edges, mass, options, writer)
  _log(entry)
  return entry


# ---------------------------------------------------------------------------
# Command line.


def evaluate_workdir(workdir, *, steps=None, overrides=None, write=True):
  """Restores checkpoints of a pretraining workdir and evaluates them.

  Args:
    workdir: holds config.json and checkpoints/.
    steps: list of checkpoint steps; None: the latest; "all": every kept checkpoint.
    overrides: dict of default_config() fields to change.
    write: write discrepancy.json, scalars and figures into the workdir.
  Returns:
    The list of step entries.
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from avjax import checkpoint  # pylint: disable=g-import-not-at-top
  from avjax.models import av  # pylint: disable=g-import-not-at-top

  workdir = os.path.abspath(workdir)
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path}: not a pretraining workdir (no config.json)")
  config = ml_collections.ConfigDict(fileio.read_json(config_path))
  options = options_from(config)
  for key, value in (overrides or {}).items():
    if key not in options:
      raise ValueError(f"unknown discrepancy option {key!r}; known: {sorted(options)}")
    options[key] = value
  ckpt = checkpoint.Checkpointer(workdir, every_steps=1)
  try:
    available = sorted(ckpt.manager.all_steps())
    if not available:
      raise FileNotFoundError(f"{workdir}: no checkpoints to evaluate")
    if steps is None:
      steps = [available[-1]]
    elif steps == "all":
      steps = available
    missing = [s for s in steps if s not in available]
    if missing:
      raise FileNotFoundError(f"{workdir}: no checkpoint for step(s) {missing}; "
                              f"available: {available}")
    model = av.build_model(config.model)
    mesh = sharding.make_mesh()
    writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0) if write else None
    entries = []
    for step in steps:
      state, _ = ckpt.restore(None, step=step)
      entry, edges, mass = evaluate_state(model, state, step, config, options=options,
                                          mesh=mesh, with_probe=step == steps[-1])
      if write:
        write_outputs(workdir, entry, edges, mass, options, writer)
      _log(entry)
      entries.append(entry)
    return entries
  finally:
    ckpt.close()


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  from avjax.data import hide_gpus_from_tensorflow  # pylint: disable=g-import-not-at-top
  hide_gpus_from_tensorflow()
  overrides = {}
  for name in ("bins", "smoothing", "max_pairs", "labels", "seed"):
    if f[name].present:
      overrides[name] = f[name].value
  if not f.probe:
    overrides["probe"] = False
  steps = "all" if f.all_steps else None if f.step is None else [f.step]
  for entry in evaluate_workdir(f.workdir, steps=steps, overrides=overrides):
    kl = ", ".join(f"{k} = {v:.4f}" for k, v in entry["kl"].items())
    print(f"step {entry['step']}: {kl}, gap = {entry['gap']:.4f}")
    probe = entry.get("probe") or {}
    if "video" in probe:
      print(f"  probe top-1: video (f) {probe['video']:.3f}, audio (g) {probe['audio']:.3f}, "
            f"z_v {probe['video_z']:.3f}, z_a {probe['audio_z']:.3f} "
            f"(majority class {probe['majority']:.3f})")
    elif probe:
      print(f"  probe skipped: {probe.get('skipped')}")


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  d = default_config()
  flags.DEFINE_string("workdir", None, "A pretraining workdir (config.json, checkpoints/).",
                      required=True)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_bool("all_steps", False, "Evaluate every kept checkpoint (curves vs step).")
  flags.DEFINE_integer("max_pairs", d.max_pairs, "Pairs per set before uniform subsampling.")
  flags.DEFINE_integer("bins", d.bins, "Shared histogram bins.")
  flags.DEFINE_float("smoothing", d.smoothing, "Pseudo-counts per bin.")
  flags.DEFINE_integer("seed", d.seed, "Seed of the pair subsample and probe title draw.")
  flags.DEFINE_string("labels", d.labels, "labels.json for the probe (default: found next "
                      "to the dataset's sources).")
  flags.DEFINE_bool("probe", True, "Run the linear probe (--noprobe to skip).")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
