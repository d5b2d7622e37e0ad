"""sakd: train spiking neural networks by distilling an ANN teacher of the same architecture."""

__version__ = "0.1.0"
