"""The thin shared layer of ganlab."""
__version__ = "0.1.0"
