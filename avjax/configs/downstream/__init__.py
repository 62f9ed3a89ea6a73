"""Configs of the downstream evaluations (paper Section 4.1): UCF101, HMDB51, ESC-50."""
