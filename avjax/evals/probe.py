"""Linear probe: logistic regression on frozen features of labeled synthetic snippets.

The synthetic generator (avjax/synthetic/) writes labels.json with one semantic
audio-visual event per snippet-sized span of every title. A snippet gets the class of the
event that overlaps its time span [L m, L (m + 1)) the most (L = 3.2 s, the snippet length
of paper Section 3); snippets that no event overlaps get -1 and are left out. The probe is
multinomial logistic regression with an L2 penalty on standardized features, fit by
full-batch Adam on the training titles' snippets and scored (top-1) on the held-out
titles' snippets: it asks how linearly readable the event semantics are from f, g (or the
head outputs z) once pretraining is done, the role downstream tasks play in Table 1.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax import fileio

LABELS_FILE = "labels.json"


# ---------------------------------------------------------------------------
# Labels.


def snippet_labels(events, num_snippets, snippet_seconds, t0=0.0):
  """Class of each snippet m of a title: the event overlapping [t0 + L m, t0 + L (m+1)) most.

  Args:
    events: dicts with "start", "end" (seconds) and "class", as in labels.json.
    num_snippets: M_n.
    snippet_seconds: L.
    t0: time of the title's first snippet.
  Returns:
    int64 [num_snippets], -1 where no event overlaps the snippet.
  """
  labels = np.full(int(num_snippets), -1, np.int64)
  best = np.zeros(int(num_snippets))
  starts = t0 + snippet_seconds * np.arange(num_snippets)
  ends = starts + snippet_seconds
  for event in events:
    overlap = np.minimum(ends, event["end"]) - np.maximum(starts, event["start"])
    better = overlap > best
    labels[better] = int(event["class"])
    best[better] = overlap[better]
  return labels


def load_labels(path):
  """labels.json of a synthetic collection: (title id -> events, number of classes)."""
  data = fileio.read_json(path)
  if "titles" not in data or "classes" not in data:
    raise ValueError(f"{path}: expected the labels.json of `python -m avjax.synthetic` "
                     "(keys 'titles' and 'classes')")
  events = {tid: t.get("events", []) for tid, t in data["titles"].items()}
  return events, len(data["classes"])


def load_looks(path):
  """labels.json's genre look of each title ({title id: look}, titles with one), and the
  number of looks; ({}, 0) for a collection without genre looks."""
  data = fileio.read_json(path)
  looks = {tid: int(t["look"]) for tid, t in data.get("titles", {}).items()
           if t.get("look") is not None}
  return looks, len(data.get("looks") or [])


def title_labels(title_ids, title_index, per_title):
  """A per-title label ({title id: int}) for each embedded snippet; -1 where none."""
  return np.array([per_title.get(title_ids[int(n)], -1) for n in title_index], np.int64)


def find_labels(titles):
  """The labels.json next to the ingested sources of `titles` (manifest entries), or None.

  Looks in the input folder of each dataset's ingest_report.json, then in the folders
  above each title's "source" file (synthetic sets keep labels.json at their top).
  """
  candidates = []
  for base in sorted({t["dataset_dir"] for t in titles if t.get("dataset_dir")}):
    report = os.path.join(base, "ingest_report.json")
    if os.path.exists(report):
      source = fileio.read_json(report).get("input")
      if source:
        candidates.append(source if os.path.isdir(source) else os.path.dirname(source))
  for t in titles:
    folder = os.path.dirname(t.get("source") or "")
    for _ in range(4):
      if not folder:
        break
      candidates.append(folder)
      folder = os.path.dirname(folder)
  for folder in dict.fromkeys(candidates):
    path = os.path.join(folder, LABELS_FILE)
    if os.path.exists(path):
      return path
  return None


def labels_for(title_ids, title_index, snippet_index, events, snippet_seconds):
  """Class per embedded snippet (rows given by title_index into title_ids, snippet_index)."""
  out = np.full(len(title_index), -1, np.int64)
  cache = {}
  for row, (n, m) in enumerate(zip(title_index, snippet_index)):
    tid = title_ids[int(n)]
    if tid not in events:
      continue
    if tid not in cache:
      longest = int(np.max(snippet_index[title_index == n])) + 1
      cache[tid] = snippet_labels(events[tid], longest, snippet_seconds)
    out[row] = cache[tid][int(m)]
  return out


# ---------------------------------------------------------------------------
# Logistic regression.


def standardize(train_x, *others):
  """Scales features by the training mean and std; returns (train_x, *others)."""
  mean = train_x.mean(axis=0)
  std = train_x.std(axis=0) + 1e-6
  return tuple((np.asarray(x, np.float32) - mean) / std for x in (train_x,) + others)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, *, num_classes, l2, learning_rate, steps):
  params = dict(w=jnp.zeros((x.shape[1], num_classes)), b=jnp.zeros((num_classes,)))
  tx = optax.adam(learning_rate)

  def loss_fn(p):
    logits = x @ p["w"] + p["b"]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return nll + 0.5 * l2 * jnp.sum(p["w"] ** 2)

  def step(carry, _):
    p, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params, losses[-1]


def fit_logistic_regression(x, y, num_classes, *, l2=1e-3, learning_rate=0.05, steps=500):
  """Multinomial logistic regression, full-batch Adam: params dict(w [D, C], b [C])."""
  params, _ = _fit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32),
                   num_classes=int(num_classes), l2=float(l2),
                   learning_rate=float(learning_rate), steps=int(steps))
  return jax.device_get(params)


def probe_accuracy(train_x, train_y, test_x, test_y, num_classes, **fit_kwargs):
  """Top-1 accuracy on (test_x, test_y) of a probe fit on (train_x, train_y).

  Rows with label -1 are dropped from both sets; features are standardized with the
  training statistics.
  """
  train_keep, test_keep = train_y >= 0, test_y >= 0
  if not train_keep.any() or not test_keep.any():
    raise ValueError(f"linear probe: {int(train_keep.sum())} labeled training and "
                     f"{int(test_keep.sum())} labeled test snippets; need both > 0")
  tr, te = standardize(train_x[train_keep], test_x[test_keep])
  params = fit_logistic_regression(tr, train_y[train_keep], num_classes, **fit_kwargs)
  predicted = np.argmax(np.asarray(te, np.float32) @ params["w"] + params["b"], axis=1)
  return float(np.mean(predicted == test_y[test_keep]))


def split_by_time(title_index, snippet_index, fit_fraction=0.75):
  """Per title, its earliest `fit_fraction` of snippets (bool mask) and the rest.

  The title-identity probe fits on a title's earlier snippets and is scored on its later
  ones, so scene-level cues near the split help little and title-wide ones (palette,
  theme music, main character: paper Section 3's content-exclusive artifacts) carry it.
  Titles with fewer than two snippets are left out of both.
  """
  title_index, snippet_index = np.asarray(title_index), np.asarray(snippet_index)
  fit = np.zeros(len(title_index), bool)
  score = np.zeros(len(title_index), bool)
  for n in np.unique(title_index):
    rows = np.flatnonzero(title_index == n)
    if len(rows) < 2:
      continue
    order = rows[np.argsort(snippet_index[rows], kind="stable")]
    cut = min(len(rows) - 1, max(1, int(round(fit_fraction * len(rows)))))
    fit[order[:cut]] = True
    score[order[cut:]] = True
  return fit, score


def title_probe_accuracy(x, title_index, snippet_index, **fit_kwargs):
  """Top-1 of a linear probe of the title id, fit on each title's earlier snippets and
  scored on its later ones (`split_by_time`); chance is 1 / (number of titles)."""
  fit, score = split_by_time(title_index, snippet_index)
  _, y = np.unique(np.asarray(title_index), return_inverse=True)
  y_fit, y_score = np.where(fit, y, -1), np.where(score, y, -1)
  return probe_accuracy(x, y_fit, x, y_score, int(y.max()) + 1, **fit_kwargs)


def majority_accuracy(train_y, test_y):
  """Accuracy of always answering the most common training class (a chance reference)."""
  train_y, test_y = train_y[train_y >= 0], test_y[test_y >= 0]
  if not len(train_y) or not len(test_y):
    return float("nan")
  return float(np.mean(test_y == np.bincount(train_y).argmax()))
