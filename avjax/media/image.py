"""Frame sizes, display rotation and JPEG encoding of decoded PyAV frames.

Phone video is often stored sideways with a rotation to apply at display time: a display
matrix (side data on the frames) or, in older files, a `rotate` tag. Frames are stored
as they are displayed: upright.
"""

import io

import numpy as np
from PIL import Image


def rotation_of(frame, stream):
  """Counter-clockwise degrees (0, 90, 180 or 270) to turn `frame` by for display.

  The display matrix (PyAV's frame.rotation, counter-clockwise) wins; else the stream's
  `rotate` tag (clockwise degrees, as FFmpeg wrote it before display matrices).
  """
  degrees = float(getattr(frame, "rotation", 0) or 0)
  if not degrees:
    tags = {k.lower(): v for k, v in (stream.metadata or {}).items()}
    try:
      degrees = -float(tags.get("rotate", 0) or 0)
    except ValueError:
      degrees = 0.0
  return int(round(degrees / 90.0)) % 4 * 90


def display_size(frame, stream, short_side, rotation=0):
  """(width, height) as displayed, with the shorter side `short_side`, keeping the
  display aspect ratio (sample aspect ratio, then `rotation`)."""
  width = frame.width * float(stream.sample_aspect_ratio or 1)
  scale = short_side / min(width, frame.height)
  size = max(2, int(round(width * scale))), max(2, int(round(frame.height * scale)))
  return size[::-1] if rotation in (90, 270) else size


def frame_to_jpeg(frame, size, quality, rotation=0):
  """A decoded frame resized to `size` (width, height, as displayed) by FFmpeg's area
  filter and turned upright by `rotation` (counter-clockwise degrees), as JPEG."""
  width, height = size if rotation in (0, 180) else size[::-1]
  rgb = frame.reformat(width=width, height=height, format="rgb24",
                       interpolation="AREA").to_ndarray()
  if rotation:
    rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()
