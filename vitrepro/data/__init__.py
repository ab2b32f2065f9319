"""Data: the LightningDataModule, data sources (bundled sample, CIFAR python batches, torchvision's
Oxford-IIIT Pets / Flowers-102 layouts, ImageFolder trees, torchvision download) and the ViT
preprocessing presets."""

from .datamodule import (
    DEFAULT_VAL_FRACTION,
    FileImageDataset,
    ImageClassificationDataModule,
    TensorImageDataset,
    balanced_order,
)
from .readers import (
    EXPECTED_CLASSES,
    clear_cache,
    decode_images,
    read_cifar_python,
    read_flowers102,
    read_pets_annotations,
)
from .sources import DATASETS, SAMPLE_ROOT, DataSource, detect_dataset, resolve_source
from .transforms import PRESETS, Normalize127, build_transform, denormalize, normalize

__all__ = [
    "DATASETS",
    "detect_dataset",
    "DEFAULT_VAL_FRACTION",
    "EXPECTED_CLASSES",
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
    "read_flowers102",
    "read_pets_annotations",
    "resolve_source",
]
