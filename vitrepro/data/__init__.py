"""Data: the LightningDataModule, data sources (bundled sample, CIFAR python batches, ImageFolder
trees, torchvision download) and the ViT preprocessing presets."""

from .datamodule import FileImageDataset, ImageClassificationDataModule, TensorImageDataset, balanced_order
from .sources import DATASETS, SAMPLE_ROOT, DataSource, clear_cache, decode_images, read_cifar_python, resolve_source
from .transforms import PRESETS, Normalize127, build_transform, denormalize, normalize

__all__ = [
    "DATASETS",
    "PRESETS",
    "SAMPLE_ROOT",
    "DataSource",
    "FileImageDataset",
    "ImageClassificationDataModule",
    "Normalize127",
    "TensorImageDataset",
    "balanced_order",
    "build_transform",
    "clear_cache",
    "decode_images",
    "denormalize",
    "normalize",
    "read_cifar_python",
    "resolve_source",
]
