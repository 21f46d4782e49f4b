"""skiff: the Docker engine rebuilt in Python, layer for layer (see DESIGN.md)."""

__version__ = "0.1.0"
