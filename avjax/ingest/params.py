"""Ingest parameters: the stored snippet format plus split, shot and scene detection settings."""

from avjax.data import records

DEFAULT_PARAMS = dict(
    records.DEFAULT_PARAMS,
    val_fraction=0.1,
    shot_threshold=0.25,  # half-L1 distance of color histograms, in [0, 1]
    min_shot_seconds=0.5,
    scene_threshold=0.25,  # shots whose key histograms are this close are one scene
)


def make_params(**overrides):
  """Ingest params: DEFAULT_PARAMS with overrides, checked."""
  unknown = set(overrides) - set(DEFAULT_PARAMS)
  if unknown:
    raise ValueError(f"unknown ingest params {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
  params = dict(DEFAULT_PARAMS, **{k: v for k, v in overrides.items() if v is not None})
  samples = records.snippet_seconds(params) * params["sample_rate"]
  if abs(samples - round(samples)) > 1e-6:
    raise ValueError(f"a snippet of {records.snippet_seconds(params)} s is not a whole number of "
                     f"samples at {params['sample_rate']} Hz")
  if not 0 <= params["val_fraction"] <= 1:
    raise ValueError(f"val_fraction must be in [0, 1], got {params['val_fraction']}")
  if params["short_side"] < 2 or params["frames_per_snippet"] < 1 or params["fps"] <= 0:
    raise ValueError(f"bad ingest params {params}")
  return params
