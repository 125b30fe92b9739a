"""One module per ``proteus`` subcommand: parse options, build a config, call ``run_*``."""
