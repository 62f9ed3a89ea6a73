"""Scene-aware sampling: the k snippets of a group from k different scenes of a title.

Paper Section 4.2 finds that adjacent snippets (w = k) make near-identical negatives, that no
fixed w beats w = M_n, and leaves for future work to "identify scene boundaries and
dynamically modify w during sampling". With each snippet's scene id (from ingest,
avjax/ingest/scenes.py) two policies do that (config.data.scenes):

  distinct  k of the title's S_n scenes, uniformly over the k-subsets of scenes, then one
            snippet uniformly inside each chosen scene. The title-level hard negatives
            (palette, main character, music) stay; no two snippets of a group share a scene.
            Law: P(set | n) = 1 / C(S_n, k) * prod_{i in set} 1 / |scene(i)| for every set
            with one snippet in each of k distinct scenes.
  adaptive  a window of k consecutive whole scenes, its first scene uniform over the
            S_n - k + 1 runs, then one snippet uniformly inside each of its scenes: the
            window w follows the scene structure, as local in time as the title's cutting
            allows. Law: P(set | n) = 1 / (S_n - k + 1) * prod_{i in set} 1 / |scene(i)| for
            every set with one snippet in each scene of a run of k consecutive scenes.

Fallback, for a title with fewer scenes than k (S_n < k; both policies): every scene gives
one snippet (uniform inside it) and the other k - S_n are uniform over the title's remaining
M_n - S_n snippets, so the group is as scene-diverse as the title allows. Law:
P(set | n) = prod_s (|set & s| / |s|) / C(M_n - S_n, k - S_n) for every set that meets every
scene. `fallback_rate` is the probability that a group's title falls back.

Titles are drawn as in HierarchicalSampler (uniformly, or by length), titles with M_n < k
are left out, and the stream is a pure function of (seed, position): exact resume, random
access, and hosts drawing their own positions, as for the scene-blind sampler.
"""

import numpy as np
from absl import logging

from avjax.data import sampling

POLICIES = ("none", "distinct", "adaptive")


class SceneSampler(sampling.HierarchicalSampler):
  """Draws groups (title_index, sorted snippet indices) by a scene-aware policy.

  The title draw, the (seed, position) stream, resume and redraws are HierarchicalSampler's
  (with w = M_n); only the snippets of a title are drawn differently.

  Args:
    scene_ids: per title, the scene id of each of its snippets (non-decreasing ints; M_n =
      its length).
    k: snippets per group, >= 2.
    policy: "distinct" or "adaptive" (see the module docstring).
    seed, title_weights: as for HierarchicalSampler.
  """

  def __init__(self, scene_ids, k, policy, seed=0, title_weights="uniform"):
    if policy not in POLICIES[1:]:
      raise ValueError(f"scenes={policy!r}: a scene-aware policy is one of {POLICIES[1:]}")
    self.policy = policy
    self._scenes = []  # per title: (first snippet of each scene, its length)
    for n, ids in enumerate(scene_ids):
      ids = np.asarray(ids, np.int64)
      if ids.size and (ids.ndim != 1 or np.any(np.diff(ids) < 0)):
        raise ValueError(f"title {n}: scene ids must be a non-decreasing 1-D sequence")
      starts = np.flatnonzero(np.r_[True, np.diff(ids) != 0]) if ids.size else ids
      self._scenes.append((starts, np.diff(np.r_[starts, ids.size])))
    super().__init__([len(ids) for ids in scene_ids], k, None, seed=seed,
                     title_weights=title_weights)
    if self.k < 2:
      raise ValueError(f"k={self.k}: scene-aware sampling draws k >= 2 snippets per title")
    self.num_scenes = np.array([len(s[0]) for s in self._scenes], np.int64)
    short = self.num_scenes[self.titles] < self.k
    self.fallback_rate = float(self.title_probabilities()[short].sum())
    if self.fallback_rate > 0:
      logging.info("scene sampler (%s, k=%d): %.1f%% of groups fall back (titles with fewer "
                   "than k scenes)", policy, self.k, 100 * self.fallback_rate)

  def _snippets(self, rng, n):
    starts, sizes = self._scenes[n]
    s, k = len(starts), self.k
    if s < k:  # fallback: every scene once, the rest uniform over the other snippets
      picked = starts + (rng.random(s) * sizes).astype(np.int64)
      rest = np.setdiff1d(np.arange(self.counts[n]), picked, assume_unique=True)
      extra = rng.choice(rest, size=k - s, replace=False)
      return np.sort(np.concatenate([picked, extra])).astype(np.int64)
    if self.policy == "distinct":
      chosen = np.sort(rng.choice(s, size=k, replace=False))
    else:  # adaptive: k consecutive scenes
      first = int(rng.integers(s - k + 1))
      chosen = np.arange(first, first + k)
    inside = (rng.random(k) * sizes[chosen]).astype(np.int64)
    return (starts[chosen] + np.minimum(inside, sizes[chosen] - 1)).astype(np.int64)


def make_sampler(config, titles):
  """The sampler config.data asks for, over `titles` (manifest entries, in order)."""
  policy = config.get("scenes", "none")
  if policy not in POLICIES:
    raise ValueError(f"config.data.scenes={policy!r}: expected one of {POLICIES}")
  if policy == "none":
    return sampling.HierarchicalSampler([t["num_snippets"] for t in titles], int(config.k),
                                        config.w, seed=int(config.seed),
                                        title_weights=config.title_weights)
  if config.w not in (None, -1):
    raise ValueError(f"config.data.w={config.w} with config.data.scenes={policy!r}: scene-aware "
                     "policies set their own window; use w=-1")
  missing = [t for t in titles if "snippet_scenes" not in t]
  if missing:
    raise ValueError(
        f"config.data.scenes={policy!r} needs scene ids, and {len(missing)} title(s) have "
        f"none (e.g. {missing[0]['id']!r} in {missing[0].get('dataset_dir', '?')}); add them "
        "with: python -m avjax.ingest.add_scenes --dataset=DIR")
  return SceneSampler([t["snippet_scenes"] for t in titles], int(config.k), policy,
                      seed=int(config.seed), title_weights=config.title_weights)
