"""Media: PyAV decoding at a frame rate, resizing, JPEG, audio resampling, and a writer."""
