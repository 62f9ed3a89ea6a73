"""Pretraining (paper Sections 3, 4.1): its defaults, the pure update, and the task the loop runs.

config (the run's defaults, no TensorFlow) <- step (the pure update: f, g, heads, Adam on
Eq. 1; no TensorFlow, the step benchmark runs it) <- task (input, evaluators, export).
"""
