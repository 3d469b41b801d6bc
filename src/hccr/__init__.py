"""hccr — handwritten Chinese character recognition, as a reproducible Snakemake + DVC + PyTorch pipeline.

The label set comes from the data (`hccr.classes`); Chinese MNIST's 15 numerals are defined
with its layout in `hccr.data.layout`.
"""

__version__ = "0.1.0"
