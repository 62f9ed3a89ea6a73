"""Typed parsing of `--config=FILE:ARGS`."""

import pytest

from avjax import config_args


def test_types_follow_defaults_and_bare_names_are_true():
  arg = config_args.parse_arg("k=16,res=high,runlocal,tau=0.07", k=1, res="default",
                              runlocal=False, tau=0.0)
  assert (arg.k, arg.res, arg.runlocal, arg.tau) == (16, "high", True, 0.07)
  assert isinstance(arg.k, int)


def test_empty_arg_gives_defaults():
  assert config_args.parse_arg(None, k=4).k == 4
  assert config_args.parse_arg("", k=4).k == 4


def test_errors_name_the_argument():
  with pytest.raises(ValueError, match="unknown config arg 'kk'"):
    config_args.parse_arg("kk=3", k=1)
  with pytest.raises(ValueError, match="k='x': expected int"):
    config_args.parse_arg("k=x", k=1)
  with pytest.raises(ValueError, match="expected a boolean"):
    config_args.parse_arg("runlocal=maybe", runlocal=False)
