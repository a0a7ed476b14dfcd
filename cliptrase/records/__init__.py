"""What a run leaves on disk and how it is read back: the JSON record, its provenance, failed cells and the
per-image counts."""
