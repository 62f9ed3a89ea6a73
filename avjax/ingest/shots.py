"""Shot boundaries of a title: large changes of the colour histogram between frames."""

import numpy as np

_PLANAR_YUV = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p",
               "yuv440p", "yuvj440p", "yuv410p")


def frame_histogram(frame):
  """Normalized 16-bin histograms of Y, U and V of a PyAV frame on a subsampled grid: [48]."""
  if frame.format.name not in _PLANAR_YUV:
    frame = frame.reformat(width=64, height=36, format="yuv420p")
  hists = []
  for plane in frame.planes[:3]:
    a = np.frombuffer(plane, np.uint8)[:plane.line_size * plane.height]
    a = a.reshape(plane.height, plane.line_size)[:, :plane.width]
    step = max(1, min(plane.height, plane.width) // 36)
    a = a[::step, ::step]
    hists.append(np.bincount((a >> 4).ravel(), minlength=16) / a.size)
  return np.concatenate(hists)


def change_score(hist, prev_hist):
  """Half-L1 distance of two frames' histograms averaged over Y, U, V: in [0, 1]."""
  return 0.5 * float(np.abs(hist - prev_hist).sum()) / 3


def detect_shots(times, scores, threshold, min_seconds):
  """Shot boundaries: frames whose change score exceeds `threshold`, at most one per min_seconds."""
  times, scores = np.asarray(times), np.asarray(scores)
  picked = []
  for i in np.argsort(-scores, kind="stable"):
    if scores[i] <= threshold:
      break
    if all(abs(times[i] - times[j]) >= min_seconds for j in picked):
      picked.append(i)
  return sorted(round(float(times[i]), 3) for i in picked)
