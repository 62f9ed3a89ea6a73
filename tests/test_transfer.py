"""Transfer: synthetic downstream sets in the standard layouts."""

import json
import os

import pytest

from avjax.downstream import layouts
from avjax.downstream import prepare as downstream_prepare
from avjax.ingest import synthetic_downstream as sd
from avjax.ingest import synthetic_presets
from avjax.ingest.synthetic_plan import plan_collection

TINY = {"ucf101": sd.Sizes(classes=2, groups=3, clips_per_group=2, spans=1),
        "hmdb51": sd.Sizes(classes=2, groups=3, clips_per_group=2, spans=1),
        "esc50": sd.Sizes(classes=2, groups=5, clips_per_group=1, spans=1)}


@pytest.mark.parametrize("dataset", layouts.DATASETS)
def test_synthetic_sets_prepare_in_the_standard_layouts(dataset, tmp_path):
  root, out = str(tmp_path / "raw"), str(tmp_path / "prepared")
  labels = sd.generate_downstream(dataset, root, sizes=TINY[dataset], progress=False)
  layout = layouts.read_layout(dataset, root)
  sizes = TINY[dataset]
  n = sizes.classes * sizes.groups * sizes.clips_per_group
  assert len(layout.clips) == n and not layout.missing and not layout.unlisted
  assert layout.classes == sd.class_names(dataset, sizes.classes)
  # Labels are the event classes the clips were rendered with.
  by_path = {c["path"]: c for c in labels["clips"]}
  ids = {c.id: by_path[os.path.relpath(c.path, root).replace(os.sep, "/")]
         for c in layout.clips}
  for clip in layout.clips:
    assert layout.classes[clip.label] == ids[clip.id]["category"]
  # Every split: train and test share no group of a class, and every clip is used.
  for s, split in layout.splits.items():
    train = {(ids[i]["label"], ids[i]["group"]) for i in split["train"]}
    test = {(ids[i]["label"], ids[i]["group"]) for i in split["test"]}
    assert train and test and not train & test, (s, train, test)
    assert len(split["train"]) + len(split["test"]) == n
  # The unchanged preparation reads the set like the real one, at the study's frame rate.
  report = downstream_prepare.prepare(dataset, root, out, fps=5, short_side=32, progress=False)
  assert report["counts"] == dict(listed=n, prepared=n, missing=0, unreadable=0, unlisted=0)
  manifest = downstream_prepare.load_manifest(out)
  seconds = sizes.spans * labels["options"]["snippet_seconds"]
  for clip in manifest["clips"]:
    assert clip["duration"] == pytest.approx(seconds, abs=0.05)
    if layouts.KINDS[dataset] == "video":
      assert clip["num_frames"] == round(seconds * 5)
    else:
      assert clip["num_samples"] == round(seconds * 48000)


def test_downstream_clips_have_fresh_looks_and_the_events_of_their_class():
  options = sd.options_for()
  assert options.genre_looks == 0 and options.grain > 0  # the stated shift
  base = synthetic_presets.preset(sd.BASE_PRESET)
  pretraining = plan_collection(movies=base["movies"], shows=base["shows"],
                                episodes=base["episodes"], minutes=0.1, seed=0,
                                options=base["options"])
  seen = {json.dumps(p["style"]["palette"]) for p in pretraining}
  sizes = sd.Sizes(classes=5, groups=3, clips_per_group=3, spans=2)
  looks = set()
  for c in range(sizes.classes):
    for g in range(sizes.groups):
      plans = sd.plan_group("ucf101", c, g, sizes, options)
      assert len({json.dumps(p["style"]) for p in plans}) == 1  # one look per group
      looks.add(json.dumps(plans[0]["style"]["palette"]))
      for p in plans:
        assert p["duration"] == pytest.approx(2 * options.snippet_seconds)
        assert [e["cls"] for e in p["events"]] == [c, c]
        assert all(s["start"] < p["duration"] for s in p["scenes"])
  assert len(looks) == sizes.classes * sizes.groups and not looks & seen
  with pytest.raises(ValueError, match="multiple of its 5 splits"):
    sd.generate_downstream("esc50", "/nonexistent", sizes=sd.Sizes(groups=3))
