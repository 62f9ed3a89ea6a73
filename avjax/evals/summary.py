"""A discrepancy entry in a few readable lines: KLs against their floors, S+ separation,
probes against random initialisation. Used by the training log, `python -m
avjax.discrepancy` and the demo's closing summary."""

import math

from avjax.evals import resampling

_FEATURES = (("video", "f"), ("audio", "g"), ("video_z", "z_v"), ("audio_z", "z_a"))


def _pct(x):
  return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"


def kl_line(entry):
  """KL(S-||S+) 0.41 (floor 0.03)  ...; the floor is the null's 95th percentile."""
  floors = entry.get("kl_floor") or {}
  parts = []
  for name, value in entry["kl"].items():
    floor = floors.get(name)
    parts.append(f"{name} {value:.3f}" + (f" (floor {floor['p95']:.3f})" if floor else ""))
  return "  ".join(parts)


def separation_line(entry):
  """Whether held-out S+ stands above S!=: the difference of means and its interval."""
  sep = (entry.get("separation") or {}).get("S+ - S!=")
  if not sep:
    return None
  verdict = "separated" if resampling.separated(sep) else "NOT separated"
  level = int(round(100 * entry["separation"].get("level", 0.95)))
  return (f"held-out S+ vs S!=: mean S+ - mean S!= = {sep['diff']:.3f}, {level}% CI "
          f"[{sep['lo']:.3f}, {sep['hi']:.3f}] over {entry['separation']['titles']} titles: "
          f"{verdict}")


_BASELINES = (("random", "random init"), ("random_bn", "random init, BN recalibrated"))


def _probe_lines(probe, what, reference):
  lines = []
  for key, short in _FEATURES:
    if key not in probe:
      continue
    line = f"  {what} probe {short:3s} {_pct(probe[key])}%"
    for row, name in _BASELINES:
      base = (probe.get(row) or {}).get(key)
      if base is not None:
        line += f"   {name} {_pct(base)}% ({100 * (probe[key] - base):+.1f})"
    lines.append(line)
  if lines:
    lines.insert(0, f"{what} probe, top-1 ({reference}):")
  return lines


def summary_lines(entry):
  """The whole entry as lines (no trailing newline)."""
  lines = [f"step {entry['step']}: {kl_line(entry)}"]
  sep = separation_line(entry)
  if sep:
    lines.append(sep)
  probe = entry.get("probe") or {}
  if "skipped" in probe:
    lines.append(f"event probe skipped: {probe['skipped']}")
  elif probe:
    lines += _probe_lines(probe, "event", f"held-out titles, {probe['num_classes']} classes, "
                          f"majority class {_pct(probe['majority']).strip()}%")
  title = entry.get("title_probe") or {}
  if title:
    lines += _probe_lines(title, "title", f"{title['titles']} training titles, later "
                          f"snippets, chance {_pct(title['chance']).strip()}%")
  genre = entry.get("genre_probe") or {}
  if genre:
    lines += _probe_lines(genre, "genre", f"held-out titles, {genre['num_looks']} looks, "
                          f"majority {_pct(genre['majority']).strip()}%")
  return lines


def short_line(entry):
  """One log line: KLs, gap, S+ separation and the f/g event probe."""
  parts = [kl_line(entry), f"gap {entry['gap']:.3f}"]
  sep = (entry.get("separation") or {}).get("S+ - S!=")
  if sep:
    parts.append(f"S+-S!= {sep['diff']:.3f} [{sep['lo']:.3f}, {sep['hi']:.3f}]")
  probe = entry.get("probe") or {}
  if "video" in probe:
    random = probe.get("random_bn") or probe.get("random") or {}
    parts.append(f"probe f {probe['video']:.3f} g {probe['audio']:.3f}" + (
        f" (random {random['video']:.3f} / {random['audio']:.3f})" if random else ""))
  return "  ".join(parts)


def verdict_lines(entry):
  """Does it learn, in three lines: S+ separation, event probe against random init (with
  BatchNorm recalibrated when measured, the fair baseline)."""
  lines = [separation_line(entry) or "held-out S+ vs S!=: not measured"]
  probe = entry.get("probe") or {}
  row, name = next(((r, n) for r, n in _BASELINES[::-1] if probe.get(r)), (None, None))
  if "video" in probe and row:
    random = probe[row]
    gains = ", ".join(f"{short} {_pct(probe[key]).strip()}% vs {_pct(random[key]).strip()}% "
                      f"({100 * (probe[key] - random[key]):+.1f})"
                      for key, short in _FEATURES[:2])
    lines.append(f"event probe on held-out titles, learned vs {name}: {gains}")
  elif "skipped" in probe:
    lines.append(f"event probe skipped: {probe['skipped']}")
  return lines
