"""Run configs shipped with avjax: `get_config(arg)` files, importable as package data.

On the command line a config is `FILE.py:ARGS`; `configs/pretrain.py` names the shipped
file from any folder, also after a non-editable install (avjax.config_args.resolve).
"""
