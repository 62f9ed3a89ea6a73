"""Encoders f (video) and g (audio), projection heads, and their composition."""
