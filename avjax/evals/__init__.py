"""Evaluations of learned embeddings: discrepancy measures, probes, figures (no TensorFlow).

measures (S+/S-/S!= and KLs, numpy) <- embed (f, g, heads on snippets) <- probe (event
classes) <- discrepancy (the evaluator the training loop runs) <- plots / study (figures,
the sampling study's report).
"""
