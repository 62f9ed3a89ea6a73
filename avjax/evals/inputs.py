"""What the inputs alone say, before any training: titles and event classes from simple
statistics of the model's inputs (a ceiling for shortcuts, a floor for learning).

Feature sets (`input_features`, on the eval inputs: centre crops, log-mel):
  video_colour    mean colour of the clip (3)
  video_pixels    the clip's time-averaged picture, 8 x 8 block means (192)
  audio_mel       mean log-mel per band (mel_bins)
  audio_mel_grid  log-mel block means, 24 bands x 8 time blocks (192)
Measured for each (`input_identifiability`):
  title  how well a held-out title's snippets are told among the held-out titles
         (`title_identification`: nearest centroid of its other snippets), with chance;
  event  the linear event probe of avjax.evals.probe (same protocol as the learned
         features' probe: fit on training titles, scored on held-out ones), with the
         majority class; only when the dataset has a labels.json;
  genre  the same probe of the title's genre look (synthetic sets with genre looks): fit
         on training titles, scored on held-out ones, so it reads only cues that generalise
         across titles.
The snippets come from an avjax.data.pipeline.EvalData-like `data`; this module reads no files.
"""

import os

import numpy as np

from avjax.evals import probe as probe_lib


def _pool(x, rows, cols):
  """Block means of the last two axes of x [..., H, W] on a rows x cols grid."""
  h = np.array_split(np.arange(x.shape[-2]), rows)
  w = np.array_split(np.arange(x.shape[-1]), cols)
  return np.stack([np.stack([x[..., i[0]:i[-1] + 1, j[0]:j[-1] + 1].mean(axis=(-2, -1))
                             for j in w], -1) for i in h], -2)


def input_features(video, audio):
  """The feature sets above, by name: [b, D] float32 each.

  video: [b, T, H, W, 3] (pipeline output); audio: [b, mel_bins, frames, 1] log-mel.
  """
  video, audio = np.asarray(video, np.float32), np.asarray(audio, np.float32)[..., 0]
  picture = video.mean(axis=1).transpose(0, 3, 1, 2)  # [b, 3, H, W]
  b = len(video)
  return dict(
      video_colour=video.mean(axis=(1, 2, 3)),
      video_pixels=_pool(picture, 8, 8).reshape(b, -1),
      audio_mel=audio.mean(axis=2),
      audio_mel_grid=_pool(audio, 24, 8).reshape(b, -1))


def title_identification(x, title_index, snippet_index):
  """(top-1, number of titles) of telling a snippet's title among all titles from x alone.

  Each title's even-numbered snippets make its centroid (in features standardized over all
  rows); each odd-numbered snippet goes to the nearest centroid. Chance is 1 / titles.
  Titles with a single snippet are left out.
  """
  title_index, snippet_index = np.asarray(title_index), np.asarray(snippet_index)
  (x,) = probe_lib.standardize(np.asarray(x, np.float32))
  counts = {n: int((title_index == n).sum()) for n in np.unique(title_index)}
  keep = np.isin(title_index, [n for n, c in counts.items() if c > 1])
  x, title_index, snippet_index = x[keep], title_index[keep], snippet_index[keep]
  titles = np.unique(title_index)
  fit = snippet_index % 2 == 0
  centroids = np.stack([x[fit & (title_index == n)].mean(0) for n in titles])
  d = ((x[~fit, None, :] - centroids[None]) ** 2).sum(-1)
  return float(np.mean(titles[np.argmin(d, axis=1)] == title_index[~fit])), len(titles)


def collect(iterator):
  """input_features of every real snippet of an eval iterator, with title/snippet index."""
  parts = {}
  for batch in iterator:
    keep = np.asarray(batch["mask"], bool)
    feats = input_features(np.asarray(batch["video"])[keep], np.asarray(batch["audio"])[keep])
    feats.update(title_index=np.asarray(batch["title_index"])[keep],
                 snippet_index=np.asarray(batch["snippet_index"])[keep])
    for key, value in feats.items():
      parts.setdefault(key, []).append(value)
  if not parts:
    raise ValueError("no snippets to read")
  return {k: np.concatenate(v) for k, v in parts.items()}


def input_identifiability(data, *, labels=None, batch_size=64, max_train_snippets=20_000,
                          seed=0, **fit_kwargs):
  """The title and event measures above for each feature set, as a dict (JSON-able)."""
  held_out_it = data.held_out(batch_size)
  held_out = collect(held_out_it)
  names = [k for k in held_out if k not in ("title_index", "snippet_index")]
  out = dict(num_held_out_titles=len(held_out_it.title_ids),
             num_held_out_snippets=int(len(held_out["title_index"])), title={}, event={})
  for name in names:
    out["title"][name], n = title_identification(held_out[name], held_out["title_index"],
                                                 held_out["snippet_index"])
  out["title_chance"] = 1.0 / n
  path = labels or probe_lib.find_labels(held_out_it.titles)
  if path is None:
    return out
  events, num_classes = probe_lib.load_labels(path)
  train_it = data.training_titles(batch_size, seed=seed, max_snippets=max_train_snippets)
  train = collect(train_it)
  y_train = probe_lib.labels_for(list(train_it.title_ids), train["title_index"],
                                 train["snippet_index"], events, data.snippet_seconds)
  y_test = probe_lib.labels_for(list(held_out_it.title_ids), held_out["title_index"],
                                held_out["snippet_index"], events, data.snippet_seconds)
  out.update(labels=os.path.abspath(path), num_classes=int(num_classes),
             num_train=int((y_train >= 0).sum()), num_test=int((y_test >= 0).sum()),
             event_majority=probe_lib.majority_accuracy(y_train, y_test))
  for name in names:
    out["event"][name] = probe_lib.probe_accuracy(train[name], y_train, held_out[name], y_test,
                                                  num_classes, **fit_kwargs)
  looks, num_looks = probe_lib.load_looks(path)
  if num_looks:
    g_train = probe_lib.title_labels(list(train_it.title_ids), train["title_index"], looks)
    g_test = probe_lib.title_labels(list(held_out_it.title_ids), held_out["title_index"], looks)
    out.update(num_looks=num_looks, genre_majority=probe_lib.majority_accuracy(g_train, g_test),
               genre={name: probe_lib.probe_accuracy(train[name], g_train, held_out[name],
                                                     g_test, num_looks, **fit_kwargs)
                      for name in names})
  return out


def report_lines(out):
  """The measures as a few readable lines."""
  lines = [f"held-out titles: {out['num_held_out_titles']} ({out['num_held_out_snippets']} "
           f"snippets); title identification top-1 (chance {out['title_chance']:.3f}):"]
  lines += [f"  {name:16s} {acc:.3f}" for name, acc in out["title"].items()]
  if out["event"]:
    lines.append(f"event probe top-1, {out['num_train']} training / {out['num_test']} "
                 f"held-out snippets, {out['num_classes']} classes (majority "
                 f"{out['event_majority']:.3f}):")
    lines += [f"  {name:16s} {acc:.3f}" for name, acc in out["event"].items()]
  if out.get("genre"):
    lines.append(f"genre look probe top-1 on held-out titles, {out['num_looks']} looks "
                 f"(majority {out['genre_majority']:.3f}):")
    lines += [f"  {name:16s} {acc:.3f}" for name, acc in out["genre"].items()]
  return lines
