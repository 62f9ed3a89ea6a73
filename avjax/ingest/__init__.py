"""Ingest: long-form titles (yours, or avjax.synthetic's) to snippet records.

discover (titles, ids, splits) -> title (one file: decode, cut, write) -> run (many titles,
resumable, in parallel on one host) or beam (the same on Apache Beam: many hosts, buckets);
cutter places frames and audio by timestamp; shots finds shot boundaries.
`python -m avjax.ingest` is the command (__main__).
"""
