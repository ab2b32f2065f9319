"""vitrepro: reproduce the Vision Transformer paper (Dosovitskiy et al., ICLR 2021)."""

__version__ = "0.1.0"
