"""avjax: self-supervised audio-visual representation learning from movies and TV shows."""

__version__ = "0.1.0"
