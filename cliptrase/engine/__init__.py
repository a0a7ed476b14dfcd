"""What mmengine's test loop runs: the registered segmentor, the metrics of both protocols and the test-loop
hooks (progress, stage timing, per-image counts, saved predictions)."""
