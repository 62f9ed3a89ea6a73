"""The snippets evaluations embed, from a pretraining config's data: the evaluation data source.

avjax.evals reads no dataset files itself: the discrepancy evaluator (during training and
offline), the probes and `python -m avjax.inputs` are given an EvalData.
"""

import jax
import numpy as np

from avjax.data import pipeline
from avjax.data import records
from avjax.data import titles as titles_lib


class EvalData:
  """The snippets evaluations embed, from a pretraining config's data (one pass each).

  held_out: every snippet of the held-out titles (config.data.eval_split).
  training_titles: whole training titles drawn by seed up to a snippet budget (the
    probe's training set).
  """

  def __init__(self, data_config):
    self.config = data_config
    self.manifest = titles_lib.pooled_manifest(data_config.dataset)
    self.snippet_seconds = records.snippet_seconds(self.manifest["params"])

  def held_out(self, batch_size):
    return pipeline.make_eval_iterator(self.config, batch_size=batch_size)

  def training_titles(self, batch_size, *, seed, max_snippets):
    titles = titles_lib.select_titles(self.manifest, self.config, budget=0)
    rng = np.random.default_rng([int(seed), 0x9B0B])
    chosen, total = [], 0
    for n in rng.permutation(len(titles)):
      if chosen and total + titles[n]["num_snippets"] > max_snippets:
        continue
      chosen.append(int(n))
      total += titles[n]["num_snippets"]
    return pipeline.EvalIterator(
        self.config, [titles[n] for n in sorted(chosen)], self.manifest["params"],
        global_batch_size=batch_size, process_index=jax.process_index(),
        process_count=jax.process_count(), num_local_devices=jax.local_device_count())
