"""Small utilities shared by the package (registries, logging, environment)."""
