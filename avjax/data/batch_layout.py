"""How a global batch of k-snippet groups is laid out over steps, hosts and devices (no TF).

Global batch s (step s of a run, counted from 0) of B = G * k snippets holds the groups at
positions [s G, (s + 1) G) of the sampler stream, in order: the sampler's batch s, whose
titles are distinct (avjax.data.sampling). Host p of P reads only its
contiguous share of G / P of them, and within the host each of its D local devices gets a
contiguous run of whole groups, so every device's shard holds whole groups: B must be a
multiple of k * P * D (`check_batch_layout` says which number does not divide). The stream
is a pure function of (seed, batch), so a run resumed after s steps reads the same
batches from batch s on, on any number of hosts (paper Section 3's policy).
"""


def check_batch_layout(global_batch_size, k, process_count=1, num_local_devices=1):
  """Validates that a global batch splits into whole groups per host and per device.

  Returns (groups per global batch G, groups per host, host batch size).
  """
  b, p, d = int(global_batch_size), int(process_count), int(num_local_devices)
  if b <= 0 or k <= 0 or p <= 0 or d <= 0:
    raise ValueError(f"need positive sizes, got global batch {b}, k={k}, {p} processes, "
                     f"{d} local devices")
  if b % k:
    raise ValueError(f"global batch size {b} is not a multiple of k={k}: a batch holds "
                     "whole groups of k snippets of one title (Section 3)")
  groups = b // k
  if groups % p:
    raise ValueError(f"the {groups} groups of a global batch ({b} / k={k}) do not split "
                     f"evenly over {p} processes")
  if (groups // p) % d:
    raise ValueError(f"the {groups // p} groups of a host batch ({b} / k={k} / {p} "
                     f"processes) do not split evenly over {d} local devices: each device's "
                     f"shard must hold whole groups, so the global batch must be a multiple "
                     f"of k * processes * devices = {k * p * d}")
  return groups, groups // p, b // p


def first_position(step, groups_per_batch):
  """Sampler position of the first group of global batch `step`: step * G."""
  return int(step) * int(groups_per_batch)
