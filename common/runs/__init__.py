"""Run folders and what they hold: the folder layout, checkpoints, per-step logs, the
records they share, and the rules of resuming. Training writes them; evaluation, export,
pictures, tables and sweeps read them, without importing the train stage."""
