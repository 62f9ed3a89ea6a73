"""Named synthetic collections: the sizes and look of `python -m avjax.synthetic --preset=NAME`.

"genres" is the benchmark of study v3 (docs/study_sampling.md, paper Section 4.2): the
look of "study" below with genre looks (plan.GENRE_LOOKS), title-level cues in picture and
sound shared by the titles of a genre, so that the shortcut generalises across titles as
it does in films, a colour grade half as strong, and titles of 3.4-4.2 min (64-78
snippets), so that a window of w = 16 differs from w = M_n.

"study" is the benchmark of the sampling study v2 (docs/study_sampling.md, Appendix A):
rendered at the resolution the study trains on (short side 32, the crop), with events that
fill much of the crop and sound well above the background, in their class's own colour and
drawn independently of the title and the location (so the event probe measures what
transfers), and strong title-exclusive cues in picture (palette, a strong grade) and sound
(theme bands, voice, music): the shortcut the paper says k > 1 removes. Its titles of 54-66 s hold 16-20
snippets of 3.2 s, enough for k = 16 groups. "demo" is the same look at demo size, and
"mini" a small set without title-exclusive cues, on which a test checks that pretraining
learns at all. "scenes" is the study's look on longer titles cut like films: scenes of 1-4
spans, each of 1-3 shots (the camera reframes the set), about 22 scenes per 3-minute title,
so that k = 16 snippets can come from 16 different scenes (scene-aware sampling,
docs/study_sampling.md).

The study presets ("genres", "study", "scenes") are frozen: changing one changes its
benchmark, so results before and after are not comparable (docs/study_sampling.md records
when each was frozen).
"""

import dataclasses

from avjax.synthetic.plan import Options

_STUDY_LOOK = dict(width=48, height=32, fps=5.0, sample_rate=24000, crf=18, event_scale=3.5,
                   event_x=(0.38, 0.62), event_margin=(0.05, 0.15), event_color="class",
                   event_outline=0.15, event_level=0.5, event_sustain=0.6, event_rms=True,
                   voice_level=0.1, theme_level=0.05, audio_codec="flac", light=(0.75, 1.15),
                   grade=3.0, room_level=(0.01, 0.01), room_cutoff=(1000.0, 1000.0))

PRESETS = {
    "study": dict(movies=240, shows=10, episodes=3, minutes=1.0,
                  options=dict(_STUDY_LOOK, classes=5, artifact_strength=1.0),
                  ingest=dict(short_side=32, val_fraction=0.2)),
    "scenes": dict(movies=90, shows=10, episodes=3, minutes=3.0,
                   options=dict(_STUDY_LOOK, classes=5, artifact_strength=1.0,
                                scene_spans=(1, 4), scene_shots=(1, 3)),
                   ingest=dict(short_side=32, val_fraction=0.2)),
    "genres": dict(movies=80, shows=7, episodes=3, minutes=3.8,
                   options=dict(_STUDY_LOOK, classes=5, artifact_strength=1.0, genre_looks=4,
                                grade=1.5),
                   ingest=dict(short_side=32, val_fraction=0.2)),
    "demo": dict(movies=40, shows=4, episodes=3, minutes=1.0,
                 options=dict(_STUDY_LOOK, classes=5, artifact_strength=1.0),
                 ingest=dict(short_side=32, val_fraction=0.25)),
    "mini": dict(movies=80, shows=0, episodes=0, minutes=0.3,
                 options=dict(_STUDY_LOOK, classes=5, artifact_strength=0.0),
                 ingest=dict(short_side=32, val_fraction=0.25)),
}
SIZES = ("movies", "shows", "episodes", "minutes")


def preset(name, **overrides):
  """A named preset; `overrides` replace fields of its sizes or of its Options.

  Returns dict(movies, shows, episodes, minutes, options=Options, ingest=dict): all but
  "ingest" are `synthetic.generate`'s arguments; "ingest" holds the ingest flags it is made
  for (short_side, val_fraction).
  """
  if name not in PRESETS:
    raise ValueError(f"unknown synthetic preset {name!r}; known: {sorted(PRESETS)}")
  sizes = {k: PRESETS[name][k] for k in SIZES}
  fields = dict(PRESETS[name]["options"])
  option_names = {f.name for f in dataclasses.fields(Options)}
  for key, value in overrides.items():
    if key in sizes:
      sizes[key] = value
    elif key in option_names:
      fields[key] = value
    else:
      raise ValueError(f"preset {name!r}: unknown field {key!r}; expected one of "
                       f"{sorted(set(SIZES) | option_names)}")
  return dict(sizes, options=Options(**fields), ingest=dict(PRESETS[name]["ingest"]))
