"""Data loaders: an infinite, seeded, resumable training stream and a plain eval loader.

Both leave stop signals to the main process (its trainer finishes the step and writes a
checkpoint) and hand data errors to it as the :class:`DatasetError` that was raised, without
the worker's traceback in front of it.
"""
import itertools
import random
import signal
from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import UserError
from .coco import CocoDetection, DatasetError
from .transforms import build_transforms


class DataFailure(NamedTuple):
    """A :class:`DatasetError` met while loading a sample, passed on as data: an exception
    raised in a worker would reach the main process wrapped in the worker's traceback."""

    message: str


class _ReportDataErrors(torch.utils.data.Dataset):
    """``dataset[i]``, or a :class:`DataFailure` where that raises :class:`DatasetError`."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        try:
            return self.dataset[item]
        except DatasetError as e:
            return DataFailure(str(e))


def collate(batch):
    """A list of ``(image, target)`` -> ``(list of images, list of targets)``: images keep
    their sizes; the model pads them. A batch with a :class:`DataFailure` is that failure."""
    failure = next((item for item in batch if isinstance(item, DataFailure)), None)
    if failure is not None:
        return failure
    images, targets = zip(*batch)
    return list(images), list(targets)


class DetectionLoader(DataLoader):
    """A DataLoader over :class:`_ReportDataErrors` that raises each :class:`DataFailure`
    as the :class:`DatasetError` it was, in the main process."""

    def __init__(self, dataset, **kwargs) -> None:
        super().__init__(_ReportDataErrors(dataset), collate_fn=collate, worker_init_fn=_init_worker, **kwargs)

    def __iter__(self) -> "_Batches":
        return _Batches(super().__iter__())


class _Batches:
    """torch's iterator over a :class:`DetectionLoader`, raising each :class:`DataFailure` as
    the :class:`DatasetError` it was, and able to stop the worker processes (:meth:`shutdown`)."""

    def __init__(self, batches) -> None:
        self.batches = batches

    def __iter__(self) -> "_Batches":
        return self

    def __next__(self):
        batch = next(self.batches)
        if isinstance(batch, DataFailure):
            raise DatasetError(batch.message)
        return batch

    def __len__(self) -> int:
        return len(self.batches)

    def shutdown(self) -> None:
        """torch's own shutdown of the workers (sentinels, bounded joins), which its __del__
        would call; nothing to do without workers."""
        stop = getattr(self.batches, "_shutdown_workers", None)
        if stop is not None:
            stop()


@contextmanager
def batches(loader: DetectionLoader) -> Iterator[_Batches]:
    """``iter(loader)`` whose worker processes are shut down when the block ends, also when
    it ends in an exception.

    Without this, an exception leaves the iterator alive in its traceback until the
    interpreter exits; by then the DataLoader no longer shuts its workers down itself, and
    multiprocessing's exit handler sends them SIGTERM, which they ignore (:func:`_init_worker`),
    and joins them: the process would hang after printing the traceback.
    """
    it = iter(loader)
    try:
        yield it
    finally:
        it.shutdown()


class TrainingBatchSampler(Sampler):
    """Endless batches of ``(index, augmentation seed)`` pairs: a fresh permutation per epoch
    from ``seed`` and the epoch, and a seed per position in the stream.

    With ``group_by_aspect`` each batch holds only landscape or only portrait images (less
    padding). The stream, augmentation included, is a pure function of (seed, dataset), so
    ``start_iter`` skips the batches already trained on and a resumed run sees exactly the
    samples the uninterrupted run would have seen. Under DDP each rank takes every
    ``world_size``-th batch of the same stream.
    """

    def __init__(self, dataset: CocoDetection, batch_size: int, seed: int = 0, group_by_aspect: bool = True,
                 start_iter: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1 or len(dataset) < 1:  # either would loop forever, the first growing a bucket
            raise ValueError(f"TrainingBatchSampler needs batch_size >= 1 and a non-empty dataset, got "
                             f"batch_size={batch_size} and {len(dataset)} images")
        self.size = len(dataset)
        self.batch_size = batch_size
        self.seed = seed
        self.groups = ([int(dataset.aspect_ratio(i) > 1) for i in range(self.size)]
                       if group_by_aspect else [0] * self.size)
        self.start_iter = start_iter
        self.rank = rank
        self.world_size = world_size

    def _indices(self) -> Iterator[int]:
        for epoch in itertools.count():
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            yield from torch.randperm(self.size, generator=g).tolist()

    def _batches(self) -> Iterator[List[Tuple[int, int]]]:
        buckets = {0: [], 1: []}
        for position, index in enumerate(self._indices()):
            bucket = buckets[self.groups[index]]
            bucket.append((index, (self.seed * 1000003 + position) % 2 ** 32))
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        start = self.start_iter * self.world_size + self.rank
        return itertools.islice(self._batches(), start, None, self.world_size)


def _init_worker(worker_id: int) -> None:
    """Leave SIGINT and SIGTERM to the main process: Ctrl-C, ``kill -- -PGID`` and Slurm's
    preemption reach the whole process group, and a worker that died first would take the
    run down before the main process could write its checkpoint. (Workers still exit when
    the main process shuts them down or dies.)

    Also NumPy and Python seeds per worker, for user code that draws from them; the
    augmentations themselves are seeded per sample by the batch sampler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def build_dataset(cfg, split: str, training: bool) -> CocoDetection:
    s = getattr(cfg.data, split)
    if not s.ann_file:
        raise UserError(f"data.{split}.ann_file is not set; point it at a COCO-format json")
    transforms = build_transforms(s.transforms, seed=cfg.train.seed) if training else None
    dataset = CocoDetection(s.ann_file, s.img_dir, transforms=transforms, filter_empty=s.filter_empty,
                            category_ids_as_labels=cfg.data.category_ids_as_labels,
                            max_image_pixels=cfg.data.max_image_pixels)
    if dataset.num_classes != cfg.model.num_classes:
        raise DatasetError(
            f"{s.ann_file} has {dataset.num_classes} classes but model.num_classes={cfg.model.num_classes}; "
            f"set model.num_classes={dataset.num_classes}"
        )
    return dataset


def build_train_loader(cfg, dataset: CocoDetection, batch_size: int, start_iter: int = 0,
                       rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """The training stream. ``pin_memory`` (for a GPU run): batches land in page-locked memory,
    so that ``.to(device, non_blocking=True)`` returns at once and the host runs ahead of the GPU
    (from pageable memory the copy waits for the GPU's queue)."""
    sampler = TrainingBatchSampler(dataset, batch_size, cfg.train.seed, cfg.data.aspect_ratio_grouping,
                                   start_iter, rank, world_size)
    generator = torch.Generator().manual_seed(cfg.train.seed + rank)
    return DetectionLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers, generator=generator,
                           persistent_workers=cfg.data.num_workers > 0, pin_memory=pin_memory)


def build_eval_loader(cfg, dataset: CocoDetection, indices: Optional[List[int]] = None,
                      pin_memory: bool = False) -> DataLoader:
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, indices)
    return DetectionLoader(subset, batch_size=cfg.eval.ims_per_batch, shuffle=False,
                           num_workers=cfg.data.num_workers, pin_memory=pin_memory)
