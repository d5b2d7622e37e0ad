"""Export a trained SNN: its one-timestep inference graph (BatchNorm folded), to NIR and ONNX."""
