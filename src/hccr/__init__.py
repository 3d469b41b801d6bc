"""hccr — handwritten Chinese character recognition on Chinese MNIST, as a reproducible pipeline."""

__version__ = "0.1.0"

# The 15 classes of Chinese MNIST, in `code` order (code = label + 1).
CHARACTERS = "零一二三四五六七八九十百千万亿"
VALUES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 10000, 100000000)
NUM_CLASSES = len(CHARACTERS)
