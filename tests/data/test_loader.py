import itertools

import pytest

from detector.data import CocoDetection, TrainingBatchSampler


class _FakeDataset:
    def __init__(self, ratios):
        self.ratios = ratios

    def __len__(self):
        return len(self.ratios)

    def aspect_ratio(self, i):
        return self.ratios[i]


def test_stream_is_deterministic_and_start_iter_skips():
    ds = _FakeDataset([1.0] * 10)
    full = list(itertools.islice(iter(TrainingBatchSampler(ds, 3, seed=4, group_by_aspect=False)), 8))
    again = list(itertools.islice(iter(TrainingBatchSampler(ds, 3, seed=4, group_by_aspect=False)), 8))
    resumed = list(itertools.islice(iter(TrainingBatchSampler(ds, 3, seed=4, group_by_aspect=False,
                                                              start_iter=5)), 3))
    assert full == again and resumed == full[5:8]
    first_epoch = sorted(i for b in full[:3] for i, _ in b)
    seeds = [seed for b in full for _, seed in b]
    assert len(set(seeds)) == len(seeds)  # every position of the stream has its own seed
    assert len(set(first_epoch)) == 9  # a permutation, no repeats inside an epoch
    other = list(itertools.islice(iter(TrainingBatchSampler(ds, 3, seed=5, group_by_aspect=False)), 8))
    assert other != full


def test_aspect_ratio_grouping():
    ds = _FakeDataset([0.5, 2.0] * 6)
    for batch in itertools.islice(iter(TrainingBatchSampler(ds, 2, seed=0)), 10):
        assert len({ds.ratios[i] > 1 for i, _ in batch}) == 1


def test_ranks_split_the_stream():
    ds = _FakeDataset([1.0] * 10)
    full = list(itertools.islice(iter(TrainingBatchSampler(ds, 2, seed=0, group_by_aspect=False)), 6))
    r0 = list(itertools.islice(iter(TrainingBatchSampler(ds, 2, seed=0, group_by_aspect=False, world_size=2)), 3))
    r1 = list(itertools.islice(iter(TrainingBatchSampler(ds, 2, seed=0, group_by_aspect=False, rank=1,
                                                         world_size=2)), 3))
    assert r0 == full[0::2] and r1 == full[1::2]


def test_real_dataset_aspect_ratio(tiny_dataset):
    ds = CocoDetection(f"{tiny_dataset}/annotations/instances_val.json", f"{tiny_dataset}/val")
    assert ds.aspect_ratio(0) == 1.0


def test_augmentation_is_a_function_of_the_sample_seed(tiny_dataset):
    from detector.data import build_transforms

    ds = CocoDetection(f"{tiny_dataset}/annotations/instances_train.json", f"{tiny_dataset}/train",
                       transforms=build_transforms([{"name": "HorizontalFlip", "p": 0.5}]))
    flips = {seed: ds[(0, seed)][0] for seed in range(8)}
    assert any(not flips[0].equal(flips[s]) for s in range(8))  # some seeds flip, some do not
    for seed in range(8):
        assert ds[(0, seed)][0].equal(flips[seed])


@pytest.mark.parametrize("batch_size", [0, -2])
def test_a_batch_size_below_one_is_refused_not_looped_on(tiny_dataset, batch_size):
    # A bucket that never fills would grow without bound (about 100 MB/s) until memory runs out.
    dataset = CocoDetection(f"{tiny_dataset}/annotations/instances_train.json", f"{tiny_dataset}/train")
    with pytest.raises(ValueError, match="batch_size >= 1"):
        TrainingBatchSampler(dataset, batch_size)


def test_gpu_loaders_pin_their_batches(tiny_config):
    # Pinned batches let .to(device, non_blocking=True) return at once; from pageable memory the
    # copy waits for the GPU, and data_time would time the GPU's queue, not the loader.
    from detector.config import load_config
    from detector.data import build_dataset, build_eval_loader, build_train_loader

    cfg = load_config(tiny_config)
    dataset = build_dataset(cfg, "train", training=True)
    assert build_train_loader(cfg, dataset, 2, pin_memory=True).pin_memory
    assert not build_train_loader(cfg, dataset, 2).pin_memory
    assert build_eval_loader(cfg, dataset, pin_memory=True).pin_memory
