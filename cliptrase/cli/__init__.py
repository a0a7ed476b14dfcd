"""The console scripts: they parse arguments, call the library and report; nothing else."""
