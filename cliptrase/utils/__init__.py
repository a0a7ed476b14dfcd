"""Leaf tools shared by every layer: devices, file system, locks, the name -> object registry, the class-name
files, the stage profiler, the one label palette."""
