"""Frame sizes and JPEG encoding of decoded PyAV frames."""

import io

from PIL import Image


def display_size(frame, stream, short_side):
  """(width, height) with the shorter side `short_side`, keeping the display aspect ratio."""
  width = frame.width * float(stream.sample_aspect_ratio or 1)
  scale = short_side / min(width, frame.height)
  return max(2, int(round(width * scale))), max(2, int(round(frame.height * scale)))


def jpeg_bytes(rgb, quality):
  """JPEG bytes of an RGB uint8 image [H, W, 3]."""
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def frame_to_jpeg(frame, size, quality):
  """A decoded frame resized to `size` (width, height) by FFmpeg's area filter, as JPEG."""
  width, height = size
  rgb = frame.reformat(width=width, height=height, format="rgb24",
                       interpolation="AREA").to_ndarray()
  return jpeg_bytes(rgb, quality)
