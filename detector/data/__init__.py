"""COCO-format data: the dataset, augmentation, loaders and the synthetic generator."""
from .coco import CocoDetection, DatasetError
from .loader import TrainingBatchSampler, batches, build_dataset, build_eval_loader, build_train_loader, collate
from .synthetic import make_synthetic_dataset
from .transforms import BoxTransform, build_transforms

__all__ = ["BoxTransform", "CocoDetection", "DatasetError", "TrainingBatchSampler", "batches", "build_dataset",
           "build_eval_loader", "build_train_loader", "build_transforms", "collate", "make_synthetic_dataset"]
