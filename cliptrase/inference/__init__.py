"""Inference on images: sliding windows, prompt scoring, one image with a free class list, overlays."""
