"""One check of a run's config, before anything is built or written to the workdir.

Every entry point runs it (avjax.loop.run for avjax.main, avjax.finetune and each run of
avjax.finetune_all; finetune_all and launch/sweep.py for all their runs up front), so a bad
number gives one clear message naming the field instead of a ZeroDivisionError deep in
the loop, a negative learning rate that trains, or a run of zero steps that exports an
untrained model. Fields a config does not have are not checked, so one validator serves
pretraining (configs/pretrain.py) and fine-tuning (configs/downstream/*.py) configs.

Allowed values and the relations between fields belong to the components that use them,
and are asked of them here, so the two cannot disagree: the sampling policies and title
weights (avjax.data.scene_sampling, .sampling), k, w and the scene policy (a sampler is
built over one stand-in title: its own checks), the data config's own relations
(avjax.data.config.problems), the batch layout over devices (avjax.data.batch_layout),
the resume modes (avjax.resume) and the rematerialisation policies (avjax.models.remat).
What only a task knows it checks itself (avjax.downstream.config.problems: the mode).
No TensorFlow.
"""

import numbers

import ml_collections

from avjax import resume
from avjax.data import batch_layout
from avjax.data import config as data_config
from avjax.data import sampling
from avjax.data import scene_sampling
from avjax.models import remat

_MISSING = object()


class ConfigError(ValueError):
  """A config field with a value the run cannot use; the message names every one."""


def _get(config, path):
  node = config
  for key in path.split("."):
    try:
      if key not in node:
        return _MISSING
      node = node[key]
    except TypeError:
      return _MISSING
  return node


def _is_int(v):
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


# (field, test, what it must be); checked only when the config has the field.
_RULES = (
    ("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("eval_batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("total_steps", lambda v: _is_int(v) and v >= 0,
     "an integer >= 0 (>0: the number of steps; 0: num_epochs decides)"),
    ("num_epochs", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("log_every_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("checkpoint_every_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("keep_checkpoints", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("keep_every_steps", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: off)"),
    ("eval_every_steps", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: at the end)"),
    ("grad_accum_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("dropout", lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)"),
    ("resume", lambda v: v in resume.RESUME_MODES, f"one of {resume.RESUME_MODES}"),
    ("optimizer.lr_peak", lambda v: _is_number(v) and v > 0, "a learning rate > 0"),
    ("optimizer.lr_init", lambda v: _is_number(v) and v >= 0, "a learning rate >= 0"),
    ("optimizer.lr_end", lambda v: _is_number(v) and v >= 0, "a learning rate >= 0"),
    ("optimizer.warmup_epochs", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("optimizer.b1", lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)"),
    ("optimizer.b2", lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)"),
    ("optimizer.eps", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("optimizer.grad_clip_norm", lambda v: _is_number(v) and v >= 0, "a number >= 0 (0: off)"),
    ("optimizer.momentum", lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)"),
    ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("loss.temperature", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("model.embed_dim", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("model.remat", lambda v: v in remat.POLICIES, f"one of {tuple(remat.POLICIES)}"),
    ("data.k", lambda v: _is_int(v) and v >= 1,
     "an integer >= 1 (snippets per title in a batch; 1: the i.i.d. baseline)"),
    ("data.w", lambda v: _is_int(v) and (v == -1 or v >= 1),
     "-1 (the whole title) or a window of >= 1 snippets"),
    ("data.scenes", lambda v: v in scene_sampling.POLICIES,
     f"one of {scene_sampling.POLICIES} (scene-aware sampling)"),
    ("data.title_weights", lambda v: v in sampling.TITLE_WEIGHTS,
     f"one of {sampling.TITLE_WEIGHTS}"),
    ("data.num_frames", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.crop_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.short_side", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.title_budget", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: all)"),
    ("data.color_jitter", lambda v: _is_number(v), "a number"),
    ("data.audio_mask_fraction", lambda v: _is_number(v), "a number"),
    ("data.prefetch", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("data.open_files", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.mel_bins", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.hop", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.n_fft", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.test_clips", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.clip_seconds", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("data.fps", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("discrepancy.bins", lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    ("discrepancy.smoothing", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    ("discrepancy.quantile", lambda v: _is_number(v) and 0 <= v < 0.5, "in [0, 0.5)"),
    ("discrepancy.max_pairs", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("discrepancy.eval_batch_size", lambda v: _is_int(v) and v >= 0,
     "an integer >= 0 (0: the training batch size)"),
    ("discrepancy.probe_max_train_snippets", lambda v: _is_int(v) and v >= 1,
     "an integer >= 1"),
    ("discrepancy.probe_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("discrepancy.probe_learning_rate", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("discrepancy.probe_l2", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
)


def problems(config, *, device_count=None):
  """Messages naming each bad field of `config` (a ConfigDict or dict); [] when fine.

  `device_count` (all processes together), when given, is checked against the batch sizes:
  a pretraining batch must split into whole groups of k snippets per device.
  """
  out = []
  for path, ok, what in _RULES:
    value = _get(config, path)
    if value is not _MISSING and not ok(value):
      out.append(f"config.{path}={value!r}: must be {what}")
  bad = {p.split("=")[0][len("config."):] for p in out}
  out += _relations(config, bad, device_count)
  for name, every in (_get(config, "evals") if _get(config, "evals") is not _MISSING
                      else {}).items():
    if not (_is_int(every) and every >= 0):
      out.append(f"config.evals.{name}={every!r}: must be an integer >= 0 (steps; 0: off)")
  return out


def _has(config, paths, bad):
  return all(_get(config, p) is not _MISSING and p not in bad for p in paths)


def _sampler_problems(data):
  """The sampler's own checks of k, w and the scene policy, over one stand-in title of k
  snippets in k scenes (what it says of a config does not depend on the titles)."""
  k = int(data["k"])
  probe = ml_collections.ConfigDict(dict(
      k=k, w=data["w"], scenes=data.get("scenes", "none"), seed=data.get("seed", 0),
      title_weights=data.get("title_weights", "uniform")))
  title = dict(id="(config check)", num_snippets=k, snippet_scenes=list(range(k)))
  try:
    scene_sampling.make_sampler(probe, [title])
  except (ValueError, TypeError) as e:
    return [f"config.data: {e}"]
  return []


def _relations(config, bad, device_count):
  """Checks between fields (skipped where a field involved is already bad)."""
  out = []
  get = lambda path: _get(config, path)
  if "total_steps" not in bad and "num_epochs" not in bad and get("total_steps") in (0, _MISSING):
    if get("num_epochs") is not _MISSING and get("num_epochs") <= 0:
      out.append(f"config.num_epochs={get('num_epochs')!r} with total_steps=0: the run would "
                 "train zero steps; set num_epochs > 0 or total_steps >= 1")
  if _has(config, ("data.k", "data.w"), bad) and not {"data.scenes", "data.seed",
                                                      "data.title_weights"} & bad:
    out += _sampler_problems(get("data"))
  if _has(config, [f"data.{n}" for n in ("crop_size", "short_side", "audio_mask_fraction",
                                          "color_jitter")], bad):
    out += data_config.problems(get("data"))
  k, batch = get("data.k"), get("batch_size")
  if batch is not _MISSING and "batch_size" not in bad:
    if k is not _MISSING and "data.k" not in bad:
      try:  # a batch holds whole groups of k snippets of one title, whole ones per device
        batch_layout.check_batch_layout(batch, k, 1, device_count or 1)
      except ValueError as e:
        out.append(f"config.batch_size={batch}: {e}")
    elif device_count:
      accum = get("grad_accum_steps")
      accum = 1 if accum is _MISSING or "grad_accum_steps" in bad else accum
      if batch % (device_count * accum):
        out.append(f"config.batch_size={batch} does not split into {accum} micro-batch(es) "
                   f"over {device_count} devices")
  eval_batch = get("eval_batch_size")
  if device_count and eval_batch is not _MISSING and "eval_batch_size" not in bad:
    if eval_batch % device_count:
      out.append(f"config.eval_batch_size={eval_batch} does not divide over "
                 f"{device_count} devices")
  return out


def check(config, *, device_count=None):
  """Raises ConfigError listing every bad field of `config`; see `problems`."""
  raise_problems(problems(config, device_count=device_count))
  return config


def raise_problems(found):
  """Raises ConfigError listing `found` (messages naming fields), if there are any."""
  if found:
    raise ConfigError("the config cannot be run:\n  " + "\n  ".join(found))


def check_steps(num_steps, config):
  """Raises ConfigError when a schedule has no step to train (nothing would be learned)."""
  if num_steps < 1:
    raise ConfigError(
        f"the schedule has {num_steps} steps (total_steps={_get(config, 'total_steps')!r}, "
        f"num_epochs={_get(config, 'num_epochs')!r}): a run must train at least one step")
