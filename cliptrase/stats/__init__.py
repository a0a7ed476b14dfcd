"""Statistics over images from per-image records: bootstrap intervals and paired comparisons, numbers only."""
