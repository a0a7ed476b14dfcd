"""cliptrase: faithful CLIPtrase and training-free OVSS baselines on open_clip + mmseg."""

__version__ = "0.1.0"
