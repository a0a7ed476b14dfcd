"""Whole-image and sliding-window inference."""
