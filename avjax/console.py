"""The console and the log file of a command: avjax's lines on the console, all else in the log.

Every command (python -m avjax.<verb>) calls `setup` first. The console then shows avjax's
messages (one short line each), errors and warnings, and progress bars; the chatter of
libraries (Orbax's INFO bursts, JAX's backend probe, TensorFlow's C++ banners) goes only
to the log file, which gets every record. The log file is LOG_FILE in the command's output
folder, opened by `attach_log` once the command has checked its inputs (a failed start
writes nothing); AVJAX_LOG_FILE names one file for all commands of a script instead.
Records logged before it opens are kept and written first.

`--verbosity=1` (absl's flag) or AVJAX_VERBOSITY=1 puts everything back on the console.

TensorFlow prints its C++ banners (oneDNN, "absl::InitializeLog") while it is imported,
whatever TF_CPP_MIN_LOG_LEVEL says: import it inside `native_output_to_log()`. Worker
processes started inside `children_output_to_log()` write their stderr to the log file.
"""

import contextlib
import logging as std_logging
import os
import sys
import tempfile
import time

from absl import flags
from absl import logging

try:  # Progress bars. Optional: an accelerator host may run the step benchmark without it.
  import tqdm
except ImportError:
  tqdm = None

VERBOSITY_ENV = "AVJAX_VERBOSITY"
LOG_FILE_ENV = "AVJAX_LOG_FILE"
LOG_FILE = "log.txt"
# logging.info(..., extra=FILE_ONLY): a record for the log file only (e.g. long tables).
FILE_ONLY = {"console": False}
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_BUFFERED_RECORDS = 20_000
NOT_TTY_DELAY = 10.0  # seconds before a bar shows when stderr is a file or pipe


class _State:
  """What setup() installed; one per process."""
  started = None  # time.time() of setup(); None: not a command (library use, tests)
  console = None  # the console handler
  buffer = None  # records kept until the log file opens
  file = None  # the log file's handler


def verbose():
  """True with --verbosity >= 1 or AVJAX_VERBOSITY >= 1: everything on the console."""
  with contextlib.suppress(ValueError):
    if int(os.environ.get(VERBOSITY_ENV, "0") or 0) >= 1:
      return True
  try:
    return flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].value >= 1
  except KeyError:
    return False


def quiet_native_libraries():
  """Environment that keeps TensorFlow's and XLA's C++ INFO/WARNING lines off stderr.

  Read when TensorFlow (or a worker process) starts, so it is set before either; worker
  processes inherit it.
  """
  if verbose():
    os.environ[VERBOSITY_ENV] = "1"
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _for_console(record):
  if verbose():
    return True
  if not getattr(record, "console", True):
    return False
  if record.levelno >= std_logging.ERROR:
    return True
  if (record.pathname or "").startswith(_PACKAGE):  # avjax's own
    return record.levelno >= std_logging.INFO
  # Other libraries: warnings, but not Python's `warnings` (deprecations and the like).
  return record.levelno >= std_logging.WARNING and record.name != "py.warnings"


class _ConsoleHandler(std_logging.Handler):
  """One short line per record on stderr, drawn around any open progress bar."""

  def __init__(self):
    super().__init__()
    self.addFilter(_for_console)

  def format(self, record):
    text = record.getMessage()
    if record.exc_info and verbose():
      text += "\n" + std_logging.Formatter().formatException(record.exc_info)
    level = "" if record.levelno < std_logging.WARNING else record.levelname + ": "
    return f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {level}{text}"

  def emit(self, record):
    try:
      if tqdm is None:
        print(self.format(record), file=sys.stderr, flush=True)
      else:
        tqdm.tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


class _Buffer(std_logging.Handler):
  """Keeps records until the log file opens (the last _BUFFERED_RECORDS of them)."""

  def __init__(self):
    super().__init__()
    self.records = []

  def emit(self, record):
    self.records.append(record)
    if len(self.records) > _BUFFERED_RECORDS:
      del self.records[:len(self.records) - _BUFFERED_RECORDS]


def setup(log_dir=None):
  """Console and log file of a command; call first in its main().

  Args:
    log_dir: an existing folder for LOG_FILE now (None: the command opens it later with
      attach_log, once its inputs are checked; records are kept until then).
  """
  quiet_native_libraries()
  root = std_logging.getLogger()
  root.removeHandler(logging.get_absl_handler())
  for handler in (_State.console, _State.buffer, _State.file):
    root.removeHandler(handler)  # None: a no-op
  _State.started = time.time()
  _State.console, _State.buffer, _State.file = _ConsoleHandler(), _Buffer(), None
  root.addHandler(_State.console)
  root.addHandler(_State.buffer)
  root.setLevel(min(root.level or std_logging.INFO, std_logging.INFO))
  std_logging.captureWarnings(True)
  previous = sys.excepthook

  def excepthook(kind, value, traceback):
    std_logging.getLogger("avjax").error("stopped by %s: %s", kind.__name__, value,
                                         exc_info=(kind, value, traceback), extra=FILE_ONLY)
    previous(kind, value, traceback)
  sys.excepthook = excepthook
  logging.info("%s", " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
               extra=FILE_ONLY)
  if os.environ.get(LOG_FILE_ENV) or log_dir:
    attach_log(log_dir)


def attach_log(folder, process_index=0):
  """Opens the log file (appending) and writes the records kept so far into it.

  A no-op outside a command (no setup()) and once a log file is open. Returns its path.
  """
  if _State.started is None:
    return None
  if _State.file is not None:
    return _State.file.baseFilename
  name = LOG_FILE if not process_index else f"log.process{process_index}.txt"
  path = os.path.abspath(os.environ.get(LOG_FILE_ENV) or os.path.join(folder or ".", name))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handler = std_logging.FileHandler(path, mode="a", encoding="utf-8")
  handler.setFormatter(logging.PythonFormatter())
  handler.setLevel(std_logging.DEBUG)
  root = std_logging.getLogger()
  if _State.buffer is not None:
    root.removeHandler(_State.buffer)
    for record in _State.buffer.records:
      handler.handle(record)
    _State.buffer = None
  root.addHandler(handler)
  _State.file = handler
  return path


@contextlib.contextmanager
def native_output_to_log():
  """What native code writes to stderr (fd 2) during the block goes to the log, not the
  console; e.g. around `import tensorflow`. A no-op with --verbosity=1."""
  if verbose():
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode("utf-8", errors="replace").strip()
      if text:
        logging.info("native libraries wrote:\n%s", text, extra=FILE_ONLY)


@contextlib.contextmanager
def children_output_to_log():
  """Processes started during the block write their stderr into the log file.

  Their Python logging and the banners of the libraries they load land there; the parent
  reports their results. A no-op with --verbosity=1 or without an open log file.
  """
  if verbose() or _State.file is None:
    yield
    return
  _State.file.flush()
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(_State.file.stream.fileno(), 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def progress(iterable=None, **kwargs):
  """A tqdm progress bar on stderr that also reads well in a file (none without tqdm).

  Shown when stderr is not a terminal too (tqdm's default hides it), redrawn less often
  there, and only for loops that last over NOT_TTY_DELAY seconds (a few-second evaluation
  leaves no bar in a log); each bar ends as one line.
  """
  if tqdm is None:
    return _NoBar(iterable, kwargs.get("total"))
  tty = sys.stderr.isatty()
  defaults = dict(file=sys.stderr, disable=False, mininterval=0.5 if tty else 15.0,
                  delay=0.0 if tty else NOT_TTY_DELAY, dynamic_ncols=tty)
  if not tty:
    defaults["ncols"] = 100
  return tqdm.tqdm(iterable, **{**defaults, **kwargs})


class _NoBar:
  """What `progress` gives without tqdm: the loop, and a bar's counters, drawn nowhere."""

  def __init__(self, iterable, total):
    self.iterable, self.total, self.n = iterable, total, 0

  def __iter__(self):
    return iter(self.iterable)

  def update(self, n=1):
    self.n += n

  def close(self, *args, **kwargs):
    pass

  set_postfix = set_postfix_str = close


def duration(seconds):
  """12.3 -> "12.3 s", 754 -> "12:34", 4000 -> "1:06:40"."""
  if seconds < 60:
    return f"{seconds:.1f} s"
  m, s = divmod(int(round(seconds)), 60)
  h, m = divmod(m, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def done(what, **paths):
  """The command's closing lines: what it did, in how long, and where things are."""
  took = f" in {duration(time.time() - _State.started)}" if _State.started else ""
  lines = [f"done{took}: {what}"]
  width = max([len(k) for k in paths] + [len("full log")])
  for name, path in paths.items():
    lines.append(f"  {name.replace('_', ' '):<{width}}  {path}")
  if _State.file is not None:
    lines.append(f"  {'full log':<{width}}  {_State.file.baseFilename}")
  logging.info("%s", "\n".join(lines))
