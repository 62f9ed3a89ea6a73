r"""Runs one command as N JAX processes on this machine: the multi-host path without a cluster.

  python launch/local_multihost.py [--processes=2] [--devices_per_process=4] \
      [--log_dir=DIR] [--timeout=SECONDS] -- python -m avjax.main --config=... --workdir=...

Every process gets the variables a cluster launcher sets (JAX_COORDINATOR_ADDRESS on a
free localhost port, JAX_NUM_PROCESSES, JAX_PROCESS_ID; or, with --variables, those of a
Kubernetes Indexed Job or of srun), which avjax's entry points pass to
jax.distributed.initialize (avjax.sharding.maybe_initialize_distributed). Each process
runs on the CPU with --devices_per_process simulated devices and gloo collectives, so 2
processes x 4 devices form one 8-device JAX program, as two 4-GPU hosts would.

Output: every line of process i goes to the console prefixed with "[pi]" and, with
--log_dir, to DIR/process_i.log. SIGTERM or SIGINT (Ctrl-C) to this launcher is passed on
to every process as SIGTERM (a preemption: the run saves a checkpoint and stops); a
second one kills them. If a process fails, the
others have --grace seconds to stop by themselves (JAX's coordination service stops them
once it misses the failed one's heartbeats); whatever still runs then is killed, and the
launcher exits with the first failure's status. Exit status: 0 when every process
succeeded. launch/local_multihost.sh wraps this for `python -m avjax.main`.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

PREFIX = "[local_multihost]"
STYLES = ("jax", "k8s", "slurm")
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def free_port():
  """A TCP port on localhost that nothing listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def cluster_variables(style, *, process_id, num_processes, port):
  """What a cluster launcher would set for process `process_id` of `num_processes`.

  jax: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (any launcher).
  k8s: as a Kubernetes Indexed Job (launch/k8s/jobset.yaml) with the process id taken
    from JOB_COMPLETION_INDEX.
  slurm: as srun sets them for the tasks of a one-node job step; JAX finds the
    coordinator itself (first node of SLURM_STEP_NODELIST, port JAX_COORDINATOR_PORT).
  """
  address = f"127.0.0.1:{port}"
  if style == "jax":
    return dict(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(num_processes),
                JAX_PROCESS_ID=str(process_id))
  if style == "k8s":
    return dict(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(num_processes),
                JOB_COMPLETION_INDEX=str(process_id))
  if style == "slurm":
    return dict(SLURM_JOB_ID=str(port), SLURM_STEP_ID="0", SLURM_NTASKS=str(num_processes),
                SLURM_STEP_NUM_TASKS=str(num_processes), SLURM_PROCID=str(process_id),
                SLURM_LOCALID=str(process_id), SLURM_NODEID="0", SLURM_NNODES="1",
                SLURM_STEP_NUM_NODES="1", SLURM_STEP_NODELIST="localhost",
                JAX_COORDINATOR_PORT=str(port))
  raise ValueError(f"cluster variables {style!r}: expected one of {STYLES}")


def _inherited(name):
  """Variables of an enclosing launch (e.g. this launcher run inside a SLURM job)."""
  return (name.startswith(("SLURM_", "OMPI_COMM_WORLD_")) or name in (
      "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_PORT",
      "JOB_COMPLETION_INDEX", "AVJAX_DISTRIBUTED", "TPU_WORKER_HOSTNAMES"))


def process_env(base, *, process_id, num_processes, port, devices, heartbeat_timeout,
                style="jax"):
  """The environment of process `process_id`: cluster variables, CPU devices, gloo.

  The persistent compilation cache is left out: only process 0 writes it, so on a rerun
  process 0 loads executables that the others compile afresh, minutes apart; runs of this
  launcher with a cache stalled in their first collective. Nor can the processes share one
  compilation (jax_share_binary_between_hosts): their cache keys differ, so process 1
  waits for a key that process 0 never writes, and gloo's 30 s context timeout ends both.
  """
  env = {k: v for k, v in base.items()
         if not _inherited(k) and k != "JAX_COMPILATION_CACHE_DIR"}
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_COUNT_FLAG)]
  env.update(cluster_variables(style, process_id=process_id, num_processes=num_processes,
                               port=port))
  env.update(
      JAX_PLATFORMS="cpu",
      JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
      XLA_FLAGS=" ".join(flags + [f"{DEVICE_COUNT_FLAG}={devices}"]),
      CUDA_VISIBLE_DEVICES="",  # the processes stand for hosts; none takes a GPU
      PYTHONUNBUFFERED="1",
      AVJAX_HEARTBEAT_TIMEOUT=str(heartbeat_timeout))
  return env


def _describe(code):
  if code is None:
    return "running"
  if code < 0:
    return f"killed by {signal.Signals(-code).name}"
  return f"exited with status {code}" + (" (SIGABRT)" if code == 134 else "")


class Launch:
  """N processes of one command; their output, their signals, their end."""

  def __init__(self, command, *, processes, devices, log_dir, grace, heartbeat_timeout,
               style="jax"):
    self.grace = grace
    self.port = free_port()
    self.logs = []
    self.procs = []
    self.killed = set()
    self.signals = 0
    self._lock = threading.Lock()
    threads = []
    for i in range(processes):
      env = process_env(os.environ, process_id=i, num_processes=processes, port=self.port,
                        devices=devices, heartbeat_timeout=heartbeat_timeout, style=style)
      log = None
      if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        log = open(os.path.join(log_dir, f"process_{i}.log"), "a", encoding="utf-8")
      # Each process in its own process group: a Ctrl-C at the terminal reaches only the
      # launcher, which passes it on as SIGTERM (the preemption signal).
      proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              process_group=0)
      self.procs.append(proc)
      self.logs.append(log)
      self.say(f"process {i} of {processes}: pid {proc.pid}, {devices} CPU devices, "
               f"coordinator 127.0.0.1:{self.port}"
               + (f", log {log.name}" if log else ""))
      threads.append(threading.Thread(target=self._pump, args=(i,), daemon=True))
    for t in threads:
      t.start()
    self.threads = threads

  def say(self, message):
    with self._lock:
      print(f"{PREFIX} {message}", flush=True)

  def _pump(self, i):
    proc, log = self.procs[i], self.logs[i]
    for raw in iter(proc.stdout.readline, b""):
      line = raw.decode("utf-8", "replace").rstrip("\n")
      with self._lock:
        print(f"[p{i}] {line}", flush=True)
        if log:
          log.write(line + "\n")
          log.flush()

  def on_signal(self, signum, frame):
    """First SIGTERM/SIGINT: SIGTERM to every process (they save and stop); second: kill."""
    del frame
    self.signals += 1
    for i, p in enumerate(self.procs):
      if p.poll() is None:
        if self.signals == 1:
          self.say(f"{signal.Signals(signum).name}: passing SIGTERM to process {i} "
                   f"(pid {p.pid})")
          p.send_signal(signal.SIGTERM)
        else:
          self.say(f"second signal: killing process {i} (pid {p.pid})")
          self.killed.add(i)
          p.kill()

  def kill_rest(self):
    for i, p in enumerate(self.procs):
      if p.poll() is None:
        self.say(f"process {i} (pid {p.pid}) still runs {self.grace:.0f} s after the "
                 "failure: killing it")
        self.killed.add(i)
        p.kill()

  def wait(self, timeout=None):
    """Waits for every process; returns the launcher's exit status."""
    start = time.time()
    first_failure, failed_at = None, None
    while None in [p.poll() for p in self.procs]:  # poll() every one: it sets returncode
      time.sleep(0.2)
      if first_failure is None:
        for i, p in enumerate(self.procs):
          if p.returncode not in (None, 0):
            first_failure, failed_at = i, time.time()
            self.say(f"process {i} {_describe(p.returncode)}; the others have "
                     f"{self.grace:.0f} s to stop")
            break
      elif time.time() - failed_at > self.grace:
        self.kill_rest()
      if timeout and time.time() - start > timeout:
        self.say(f"timeout: still running after {timeout:.0f} s, killing every process")
        for i, p in enumerate(self.procs):
          if p.poll() is None:
            self.killed.add(i)
            p.kill()
    for t in self.threads:
      t.join(timeout=10)
    for log in self.logs:
      if log:
        log.close()
    return self.report(first_failure, failed_at)

  def report(self, first_failure, failed_at):
    codes = [p.returncode for p in self.procs]
    if first_failure is None:
      first_failure = next((i for i, c in enumerate(codes) if c != 0), None)
    for i, code in enumerate(codes):
      how = "killed by the launcher" if i in self.killed else _describe(code)
      self.say(f"process {i}: {how}")
    if first_failure is None:
      return 0
    self.say(f"FAILED: process {first_failure} {_describe(codes[first_failure])} first; "
             "see its output above" + (" and the others' for the consequences"
                                       if len(codes) > 1 else ""))
    code = codes[first_failure]
    return 128 - code if code < 0 else code


def parse_args(argv):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      usage="%(prog)s [options] -- COMMAND [ARGS...]")
  parser.add_argument("--processes", type=int, default=2, help="number of JAX processes")
  parser.add_argument("--devices_per_process", type=int, default=4,
                      help="simulated CPU devices per process")
  parser.add_argument("--log_dir", default="", help="also write DIR/process_i.log")
  parser.add_argument("--grace", type=float, default=60.0,
                      help="seconds the others have to stop after a process failed")
  parser.add_argument("--heartbeat_timeout", type=int, default=30,
                      help="seconds without heartbeats before JAX declares a process dead")
  parser.add_argument("--variables", choices=STYLES, default="jax",
                      help="which launcher's variables the processes get: jax "
                           "(JAX_COORDINATOR_ADDRESS, ...), k8s (JOB_COMPLETION_INDEX for "
                           "the process id) or slurm (what srun sets), to try each path")
  parser.add_argument("--timeout", type=float, default=0.0,
                      help="kill every process after this many seconds (0: never)")
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  if args.command[:1] == ["--"]:
    args.command = args.command[1:]
  if not args.command:
    parser.error("no command given (put it after --)")
  if args.processes < 1 or args.devices_per_process < 1:
    parser.error("--processes and --devices_per_process must be positive")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  launch = Launch(args.command, processes=args.processes, devices=args.devices_per_process,
                  log_dir=args.log_dir, grace=args.grace,
                  heartbeat_timeout=args.heartbeat_timeout, style=args.variables)
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, launch.on_signal)
  return launch.wait(timeout=args.timeout)


if __name__ == "__main__":
  sys.exit(main())
