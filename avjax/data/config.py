"""The data config, its constants and its own checks, free of TensorFlow.

Training configs import this (not the pipeline), so a config file builds on a host that
has JAX but no TensorFlow, such as an accelerator host running the step benchmark.
`problems` is what the config alone can get wrong; the pipeline checks it with the
dataset's stored format (titles.check_format), the validator before anything runs.
"""

import ml_collections

# Kinetics-400 RGB statistics, as used by the R(2+1)D-18 video encoder (values in [0, 1]).
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)

SAMPLE_RATE = 48000
N_FFT = 2048
HOP = 512
MEL_BINS = 96
MEL_LOWER_HZ = 0.0
MEL_UPPER_HZ = 24000.0
LOG_FLOOR = 1e-6
MEL_MEAN = 0.05
MEL_STD = 3.5


def default_config():
  """Data config; the pretraining config embeds it as `config.data`."""
  c = ml_collections.ConfigDict()
  c.dataset = ()  # dataset dir(s) written by ingest; titles of all of them are pooled
  # Title selection (select_titles).
  c.split = "train"
  c.eval_split = "val"
  c.kinds = "both"  # "movie", "episode" or "both"
  c.genres = ml_collections.config_dict.placeholder(tuple)  # None: all; else any-of
  c.title_budget = 0  # >0: use this many titles (Section 4.2 genre ablation: 1.6K movies)
  c.genre_mix = "natural"  # budget drawn at random ("natural") or evenly per genre
  # Sampling policy (Section 3).
  c.k = 16
  c.w = -1  # sampling window in snippets; -1: w = M_n (no temporal constraint)
  # Scene-aware sampling (Section 4.2's future work; data/scene_sampling.py): "none", or
  # "distinct" (k different scenes of the title) or "adaptive" (k consecutive scenes); the
  # last two need scene ids in the manifest and w = -1.
  c.scenes = "none"
  c.title_weights = "uniform"
  c.seed = 0
  # Video (Section 4.1): 16 frames, shorter side 190, random 158x158 crop.
  c.num_frames = 16  # a divisor of the stored frames: taken with a stride
  c.short_side = 190
  c.crop_size = 158
  c.color_jitter = 0.0  # sigma of Table 2; 0 = off
  c.video_mean = VIDEO_MEAN
  c.video_std = VIDEO_STD
  # Audio (Section 4.1): log-mel, 96 filters, FFT 2048, hop 512 at 48 kHz.
  c.sample_rate = SAMPLE_RATE
  c.mel_bins = MEL_BINS
  c.n_fft = N_FFT
  c.hop = HOP
  c.mel_lower_hz = MEL_LOWER_HZ
  c.mel_upper_hz = MEL_UPPER_HZ
  c.log_floor = LOG_FLOOR
  c.audio_mean = MEL_MEAN
  c.audio_std = MEL_STD
  c.audio_mask_fraction = 0.25  # band dropout, up to 25% of the time or frequency axis
  # Machinery.
  c.skip_bad_records = False  # True: leave out damaged records and titles, with a warning
  c.verify_records = True  # check every record's CRC32C as it is read (damaged bytes)
  c.prefetch = 2  # host batches
  c.num_parallel = -1  # parallel decode calls; -1 = two per core
  c.open_files = 128  # titles whose record file and index stay open
  return c


def problems(c):
  """What is wrong in data config `c` whatever the dataset: messages naming each field."""
  out = []
  if c.crop_size > c.short_side:
    out.append(f"config.data.crop_size={c.crop_size} > config.data.short_side={c.short_side}: "
               "the crop must fit in the frame")
  if not 0 <= c.audio_mask_fraction < 1:
    out.append(f"config.data.audio_mask_fraction={c.audio_mask_fraction}: expected [0, 1)")
  if c.color_jitter < 0:
    out.append(f"config.data.color_jitter={c.color_jitter}: expected >= 0")
  return out
