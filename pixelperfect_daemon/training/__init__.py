"""Training-time code (needs the `train` extra: TensorFlow/Keras). Inference never imports it."""
