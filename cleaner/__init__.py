"""cleaner: a messy folder of real and fake images in, a clean labelled dataset and a detector out.

Importing the package is cheap: nothing here imports TensorFlow (only ``cleaner.models`` does).
"""

__version__ = "0.1.0"
