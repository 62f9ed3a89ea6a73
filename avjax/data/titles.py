"""The titles a run uses: manifests of one or several datasets pooled, and title selection.

Selection filters by split, kind and genre and can keep a title budget (paper Section 4.2:
the genre ablation uses 1.6K movies, drawn at random or evenly per genre).
"""

import hashlib
import json

from absl import logging
import numpy as np

from avjax.data import config as data_config
from avjax.data import records

KINDS = {"movie": ("movie",), "movies": ("movie",), "episode": ("episode",),
         "episodes": ("episode",), "both": ("movie", "episode")}
GENRE_MIX = ("natural", "uniform")


def dataset_paths(dataset):
  """The dataset dirs that config.dataset names (one, or a list to pool)."""
  if isinstance(dataset, str):
    dataset = [dataset]
  paths = [str(p) for p in (dataset or []) if str(p)]
  if not paths:
    raise ValueError("config.dataset is empty: give the dataset dir(s) written by "
                     "`python -m avjax.ingest`")
  return paths


def pooled_manifest(dataset):
  """Manifest of one dataset dir or the pooled titles of several.

  Each title entry gets a "dataset_dir" key. Pooled datasets must share the snippet
  format (fps, frames per snippet, sample rate) and have distinct title ids.
  """
  paths = dataset_paths(dataset)
  params, titles, seen = None, [], {}
  for path in paths:
    manifest = records.load_manifest(path)
    p = manifest["params"]
    if params is None:
      params = dict(p)
    else:
      for key in ("fps", "frames_per_snippet", "sample_rate"):
        if p.get(key) != params.get(key):
          raise ValueError(f"{path}: {key}={p.get(key)!r} differs from {paths[0]} "
                           f"({params.get(key)!r}); pooled datasets need one snippet format")
    for entry in manifest["titles"]:
      if entry["id"] in seen:
        raise ValueError(f"title {entry['id']!r} is in both {seen[entry['id']]} and {path}")
      seen[entry["id"]] = path
      titles.append(dict(entry, dataset_dir=path))
  return dict(format_version=records.FORMAT_VERSION, params=params, titles=titles)


def _genre_set(genres):
  if genres is None:
    return None
  if isinstance(genres, str):
    genres = [g for g in genres.split(",") if g.strip()]
  return {g.strip().lower() for g in genres}


def select_titles(manifest, config, *, split=None, budget=None):
  """The title entries a run uses, in manifest order (deterministic per config.seed).

  Filters by split, kind ("movie", "episode", "both") and genre set (a title qualifies if
  any of its genres is in config.genres), then keeps config.title_budget titles if > 0:
  a uniform random subset ("natural" genre mix: genres as common as in the collection) or
  an even share per genre ("uniform": genres take turns picking one of their remaining
  titles at random; a genre that runs out drops out of the rotation). `manifest` is from
  `pooled_manifest` (or records.load_manifest); `split` and `budget` override config.split
  and config.title_budget.
  """
  split = config.split if split is None else split
  budget = config.title_budget if budget is None else budget
  if config.kinds not in KINDS:
    raise ValueError(f"kinds={config.kinds!r}: expected one of {sorted(KINDS)}")
  if config.genre_mix not in GENRE_MIX:
    raise ValueError(f"genre_mix={config.genre_mix!r}: expected one of {GENRE_MIX}")
  kinds = KINDS[config.kinds]
  wanted = _genre_set(config.genres)
  eligible = [
      t for t in manifest["titles"]
      if t["split"] == split and t["kind"] in kinds
      and (wanted is None or wanted & {g.lower() for g in t["genres"]})
  ]
  if not eligible:
    raise ValueError(f"no titles with split={split!r}, kinds={config.kinds!r}, "
                     f"genres={config.genres!r} among {len(manifest['titles'])} titles")
  if not budget or budget == len(eligible):
    return eligible
  if budget > len(eligible):
    raise ValueError(f"title_budget={budget} but only {len(eligible)} titles have "
                     f"split={split!r}, kinds={config.kinds!r}, genres={config.genres!r}")
  rng = np.random.default_rng([int(config.seed), 0x7171E5])
  if config.genre_mix == "natural":
    chosen = set(rng.choice(len(eligible), size=budget, replace=False).tolist())
  else:
    chosen = _even_genres(eligible, wanted, budget, rng)
  return [t for i, t in enumerate(eligible) if i in chosen]


def _even_genres(eligible, wanted, budget, rng):
  """Indices of `budget` titles, genres taking turns to pick one of theirs at random."""
  names = sorted(wanted or {g.lower() for t in eligible for g in t["genres"]})
  queues = {}
  for g in names:
    members = [i for i, t in enumerate(eligible) if g in {x.lower() for x in t["genres"]}]
    queues[g] = list(rng.permutation(members))
  order = [names[i] for i in rng.permutation(len(names))]
  chosen = set()
  while len(chosen) < budget and order:
    for g in list(order):
      q = queues[g]
      while q and q[-1] in chosen:
        q.pop()
      if not q:
        order.remove(g)
        continue
      chosen.add(int(q.pop()))
      if len(chosen) == budget:
        break
  if len(chosen) < budget:
    raise ValueError(f"title_budget={budget}: only {len(chosen)} titles have a genre")
  return chosen


def check_format(config, params):
  """Checks the config against the stored snippet format; returns the frame stride."""
  stored = int(params["frames_per_snippet"])
  if config.num_frames <= 0 or stored % config.num_frames:
    raise ValueError(f"num_frames={config.num_frames} must divide the {stored} frames "
                     "stored per snippet (frames are taken with a stride)")
  if int(params["sample_rate"]) != config.sample_rate:
    raise ValueError(f"sample_rate={config.sample_rate} but the dataset stores "
                     f"{params['sample_rate']} Hz audio")
  problems = data_config.problems(config)
  if problems:
    raise ValueError("; ".join(problems))
  return stored // config.num_frames


class BadDatasetError(ValueError):
  """Titles whose files are missing or damaged, found at start-up."""


def readable_titles(config, titles):
  """The titles whose files look whole; the others stop the run or (skip_bad_records) are
  left out with a warning. Returns (good titles, [(entry, problem)] left out)."""
  good, bad = records.check_titles(titles)
  if not bad:
    return good, bad
  shown = [f"{e['dataset_dir']}: title {e['id']}: {problem}" for e, problem in bad[:20]]
  more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
  listing = "\n  ".join(shown) + more
  if not config.skip_bad_records or not good:
    hint = ("No readable title is left." if not good else
            "Re-ingest them (python -m avjax.ingest --verify=DIR --repair, then the same "
            "ingest command again), or set skip_bad_records to leave them out.")
    raise BadDatasetError(f"{len(bad)} of {len(titles)} titles cannot be read:\n  {listing}"
                          f"\n{hint}")
  logging.warning("leaving out %d of %d titles whose files cannot be read "
                  "(skip_bad_records):\n  %s", len(bad), len(titles), listing)
  return good, bad


def fingerprint(titles):
  """{title id: [snippets, split, content hash]} of the titles a run reads: the identity of
  its data, saved with each checkpoint so that a restart on changed data is noticed.

  The hash covers the title's entry (what its entry file and the manifest hold: kind,
  show, genres, duration, snippet count, split, scene ids, file names), not where the
  dataset lies, so a moved dataset keeps its fingerprint.
  """
  out = {}
  for t in titles:
    entry = {k: v for k, v in t.items() if k != "dataset_dir"}
    digest = hashlib.sha1(json.dumps(entry, sort_keys=True).encode("utf-8")).hexdigest()
    out[str(t["id"])] = [int(t["num_snippets"]), t.get("split"), digest[:12]]
  return out
