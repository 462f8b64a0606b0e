"""Everything that needs TensorFlow/Keras. Imported only by commands that use a model."""
