"""CLIP as open_clip builds it: loading, checkpoints, the weights cache, the shipped model configs, text
classifiers and the dense forward."""
