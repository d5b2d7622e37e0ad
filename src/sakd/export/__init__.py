"""Export a trained SNN: its one-timestep inference graph (BatchNorm folded), to NIR, ONNX or a
format a plug-in registers (:data:`EXPORTERS`; each format is one file here)."""

from sakd.export.from_checkpoint import example_input, export_checkpoint
from sakd.export.registry import EXPORTERS
from sakd.registry import import_submodules

__all__ = ["EXPORTERS", "example_input", "export_checkpoint"]

import_submodules(__name__, __path__)  # every file registers its format
