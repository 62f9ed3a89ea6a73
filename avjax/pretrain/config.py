"""The pretraining run's defaults (paper Sections 3, 4.1 and 7.2), free of TensorFlow.

configs/pretrain.py states a run by overriding them; the task hands them to the loop, for
which a field that an older checkpoint does not know counts as its default here.
"""

import ml_collections

from avjax.data import config as data_config
from avjax.evals import discrepancy
from avjax.pretrain import step


def default_config():
  """The paper's run: batch 512, 10 epochs of sum_n M_n snippets, k = 16, w = M_n."""
  update = step.default_config()
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = data_config.default_config()
  config.model = update.model
  config.loss = update.loss
  config.batch_size = 512
  config.num_epochs = 10
  config.total_steps = 0  # >0 overrides num_epochs
  config.optimizer = update.optimizer
  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.keep_every_steps = 10000
  # A restart that changes data, model, loss, optimizer or batch is refused ("guard"), or
  # resumes and records the change in WORKDIR/config_history.jsonl ("allow_changes").
  config.resume = "guard"
  # Periodic held-out evaluations: evaluator name -> every N steps (0 = off).
  config.evals = ml_collections.ConfigDict(dict(discrepancy=0))
  # Options of the discrepancy measures and probe (bins, smoothing, labels.json, ...).
  config.discrepancy = discrepancy.default_config()
  return config
