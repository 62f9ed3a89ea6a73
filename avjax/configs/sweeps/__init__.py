"""Sweeps of pretraining runs (the paper's ablation tables), run by launch/sweep.py."""
