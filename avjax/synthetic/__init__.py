"""The synthetic long-form generator: movies and TV episodes with known events and scenes.

plan (what happens when: titles, scenes, shots, events, a title's style) -> render
(pictures and sound, to H.264 files) -> generator (a collection: files, titles.csv,
labels.json); presets (named sizes and looks: study, scenes, demo, mini). It writes video
files that `python -m avjax.ingest` reads like any collection; `python -m avjax.synthetic`
is the command (__main__).
"""
