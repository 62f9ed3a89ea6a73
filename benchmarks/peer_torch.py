r"""The PyTorch reference for the training-step benchmark (`python -m avjax.benchmark step`).

  python benchmarks/peer_torch.py --batch=64 --steps=25 [--json=PATH]
  python benchmarks/peer_torch.py --device=cpu --batch=2 --steps=3 --frames=4 --crop=32 \
      --audio_frames=48                        # smoke test

What a user would otherwise write: torchvision `r2plus1d_18` without its classifier
(video f) and `resnet18` with a 1-channel stem and no fc (audio g), each followed by the
same head as avjax (1x1 conv, BN, ReLU, 1x1 conv to d=512, global average pool), the
unnormalized NCE loss of paper Eq. 1 in float32, Adam, bf16 autocast, channels_last_3d
video (channels_last audio), cuDNN benchmark mode. Same shapes and the same timing
method as avjax: synthetic batches made on the device once, warm-up steps (which include
cuDNN's autotuning), then the median over --steps steps, each synchronized.

FLOPs are PyTorch's own count (torch.utils.flop_counter) of one step, which for the paper's
shapes is ~495 GFLOP per sample, the figure avjax's analytic count reproduces.

Needs torch and torchvision (`pip install 'avjax[torch]'`) only where it runs.
"""

import argparse
import json
import platform
import statistics
import sys
import time

try:
  import torch
  import torchvision
  from torch import nn
except ImportError:  # Reported by main(); the module stays importable.
  torch = None


def _require_torch():
  if torch is None:
    sys.exit("benchmarks/peer_torch.py needs PyTorch and torchvision, which are not "
             "installed here: pip install 'torch>=2.9' 'torchvision>=0.24' "
             "(or the avjax[torch] extra).")


# ---------------------------------------------------------------------------
# Model and loss.


def video_encoder():
  """r2plus1d_18 up to its last stage: (N, 3, T, H, W) -> (N, 512, T/8, H/16, W/16)."""
  m = torchvision.models.video.r2plus1d_18(weights=None)
  return nn.Sequential(m.stem, m.layer1, m.layer2, m.layer3, m.layer4)


def audio_encoder():
  """resnet18 with a 1-channel stem, up to its last stage: (N, 1, F, T) -> (N, 512, F', T')."""
  m = torchvision.models.resnet18(weights=None)
  m.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
  return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3,
                       m.layer4)


def head(conv, norm, channels=512, dim=512):
  """h_f / h_g (paper Section 3, kernel size 1 per Section 7.2), without the pooling."""
  return nn.Sequential(conv(channels, channels, 1, bias=False), norm(channels),
                       nn.ReLU(inplace=True), conv(channels, dim, 1, bias=True))


def build_model():
  """The four trained parts as one module returning (z_video, z_audio) in float32."""

  class AV(nn.Module):
    """f, g and heads."""

    def __init__(self):
      super().__init__()
      self.video_encoder = video_encoder()
      self.audio_encoder = audio_encoder()
      self.video_head = head(nn.Conv3d, nn.BatchNorm3d)
      self.audio_head = head(nn.Conv2d, nn.BatchNorm2d)

    def forward(self, video, audio):
      zv = self.video_head(self.video_encoder(video)).float().mean(dim=(2, 3, 4))
      za = self.audio_head(self.audio_encoder(audio)).float().mean(dim=(2, 3))
      return zv, za

  return AV()


def nce_loss(z_video, z_audio):
  """Eq. 1: mean_i [logsumexp({s_ii} u {s_ij, s_ji : j != i}) - s_ii], in float32."""
  s = z_video.float() @ z_audio.float().T
  eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
  logits = torch.cat([s, s.T.masked_fill(eye, float("-inf"))], dim=1)
  return (torch.logsumexp(logits, dim=1) - s.diagonal()).mean()


# ---------------------------------------------------------------------------
# Measurement.


def _sync(device):
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def measure(args):
  """Builds model, optimizer and a synthetic batch, times the step. Returns a dict."""
  device = torch.device(args.device)
  torch.manual_seed(0)
  if device.type == "cuda":
    torch.backends.cudnn.benchmark = True
    torch.cuda.reset_peak_memory_stats(device)
  model = build_model().to(device)
  if args.channels_last:
    model.video_encoder.to(memory_format=torch.channels_last_3d)
    model.video_head.to(memory_format=torch.channels_last_3d)
    model.audio_encoder.to(memory_format=torch.channels_last)
    model.audio_head.to(memory_format=torch.channels_last)
  model.train()
  params = sum(p.numel() for p in model.parameters())
  opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                         fused=True if args.fused_adam else None)
  forward = torch.compile(model) if args.compile else model

  b = args.batch
  video = torch.randn(b, 3, args.frames, args.crop, args.crop, device=device)
  audio = torch.randn(b, 1, args.mel_bins, args.audio_frames, device=device)
  if args.channels_last:
    video = video.contiguous(memory_format=torch.channels_last_3d)
    audio = audio.contiguous(memory_format=torch.channels_last)

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.bf16):
      z_video, z_audio = forward(video, audio)
    loss = nce_loss(z_video, z_audio)  # outside autocast: float32 like avjax
    loss.backward()
    opt.step()
    return loss

  # Warm-up: cuDNN autotuning (and torch.compile, if asked) happens here.
  t0 = time.perf_counter()
  for _ in range(args.warmup):
    step()
  _sync(device)
  warmup_s = time.perf_counter() - t0

  counted = None
  try:
    from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top
    with FlopCounterMode(display=False) as counter:
      step()
    _sync(device)
    counted = counter.get_total_flops()
  except Exception as e:  # pylint: disable=broad-except
    print(f"FLOP counter unavailable: {e}", file=sys.stderr)

  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    loss = step()
    _sync(device)
    times.append(time.perf_counter() - t0)
  loss = float(loss.detach())
  step_s = statistics.median(times)
  peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
  name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
  return dict(
      device=name or device.type, platform=device.type, devices=1, torch=torch.__version__,
      torchvision=torchvision.__version__, per_device_batch=b, global_batch=b,
      video_shape=[args.frames, args.crop, args.crop, 3],
      audio_shape=[args.mel_bins, args.audio_frames, 1], params=params,
      dtype="bfloat16 autocast" if args.bf16 else "float32", compile=bool(args.compile),
      steps=args.steps, warmup_steps=args.warmup, step_time_s=step_s,
      step_time_p10_s=_percentile(times, 10), step_time_p90_s=_percentile(times, 90),
      samples_per_s=b / step_s, samples_per_s_per_device=b / step_s,
      compile_s=warmup_s, peak_memory_bytes=peak,
      counted_gflop_per_sample=counted / b / 1e9 if counted else None,
      tflops_per_device=counted / step_s / 1e12 if counted else None, loss=loss)


def _percentile(values, q):
  values = sorted(values)
  k = (len(values) - 1) * q / 100
  lo = int(k)
  hi = min(lo + 1, len(values) - 1)
  return values[lo] + (values[hi] - values[lo]) * (k - lo)


def to_markdown(r):
  gib = lambda n: "n/a" if n is None else f"{n / 2**30:.2f} GiB"
  flops = (f"{r['counted_gflop_per_sample']:.1f} (torch.utils.flop_counter)"
           if r["counted_gflop_per_sample"] else "n/a")
  tflops = f"{r['tflops_per_device']:.2f} TFLOP/s" if r["tflops_per_device"] else "n/a"
  rows = [
      ("device", f"1x {r['device']} ({r['platform']}), torch {r['torch']}, "
                 f"torchvision {r['torchvision']}"),
      ("model", f"r2plus1d_18 + resnet18 (1-ch), {r['params']:,} params, {r['dtype']}, "
                f"compile={r['compile']}"),
      ("inputs", f"video {'x'.join(map(str, r['video_shape']))}, audio "
                 f"{'x'.join(map(str, r['audio_shape']))}"),
      ("batch", f"{r['per_device_batch']}"),
      ("samples/s", f"{r['samples_per_s']:.1f}"),
      ("step time (median)", f"{r['step_time_s'] * 1e3:.1f} ms (p10 "
                             f"{r['step_time_p10_s'] * 1e3:.1f}, p90 "
                             f"{r['step_time_p90_s'] * 1e3:.1f}; {r['steps']} steps after "
                             f"{r['warmup_steps']} warm-up)"),
      ("warm-up (autotune) time", f"{r['compile_s']:.1f} s"),
      ("peak device memory", gib(r["peak_memory_bytes"])),
      ("GFLOP per sample, fwd+bwd", flops),
      ("achieved", tflops),
  ]
  return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=64, help="batch size (one device)")
  p.add_argument("--steps", type=int, default=25, help="timed steps (median over these)")
  p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
  p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--crop", type=int, default=158)
  p.add_argument("--mel_bins", type=int, default=96)
  p.add_argument("--audio_frames", type=int, default=300)
  p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                 help="bf16 autocast (default on)")
  p.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=True,
                 help="channels_last_3d video, channels_last audio (default on)")
  p.add_argument("--fused_adam", action="store_true", help="Adam(fused=True)")
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  p.add_argument("--json", default=None, help="also write the figures to this file")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  _require_torch()
  if args.device is None:
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
  result = measure(args)
  print(to_markdown(result))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
