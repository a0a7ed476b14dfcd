"""Inference on images: sliding windows, prompt scoring, one image with a free class list, colour maps and
overlays, the one writer of saved predictions."""
