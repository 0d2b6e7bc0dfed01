"""The RNG states a checkpoint carries, on a machine whose GPUs are faked: a run keeps the CUDA
generator of its own device, so that it resumes where fewer GPUs are visible."""
import torch

from detector.engine.checkpoint import rng_state, set_rng_state


class FakeCuda:
    """torch.cuda's RNG calls over ``count`` GPUs, each with a state of its own."""

    def __init__(self, monkeypatch, count: int) -> None:
        self.states = [torch.full((16,), i, dtype=torch.uint8) for i in range(count)]
        self.restored = {}
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(self.states))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self._set_all)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self._index(device)])
        monkeypatch.setattr(torch.cuda, "set_rng_state", self._set)

    @staticmethod
    def _index(device) -> int:
        return torch.device(device).index or 0

    def _set(self, state, device="cuda"):
        self.states[self._index(device)]  # IndexError for a GPU that is not there, as torch raises
        self.restored[self._index(device)] = state.clone()

    def _set_all(self, states):
        for index, state in enumerate(states):
            self._set(state, index)


def test_a_run_saves_and_restores_only_its_own_gpus_generator(monkeypatch):
    fake = FakeCuda(monkeypatch, count=2)
    state = rng_state(torch.device("cuda", 1))
    assert torch.equal(state["cuda"], fake.states[1])  # one state: the training device's

    # resumed under ablate --devices (CUDA_VISIBLE_DEVICES=1): one GPU visible, now cuda:0
    fewer = FakeCuda(monkeypatch, count=1)
    set_rng_state(state, torch.device("cuda", 0))
    assert list(fewer.restored) == [0] and torch.equal(fewer.restored[0], state["cuda"])


def test_an_older_checkpoint_with_every_gpus_state_resumes_with_fewer_visible(monkeypatch):
    FakeCuda(monkeypatch, count=2)
    saved = rng_state(torch.device("cpu"))
    assert "cuda" not in saved  # a CPU run keeps no CUDA state, even where CUDA exists
    saved["cuda"] = [torch.full((16,), 7, dtype=torch.uint8), torch.full((16,), 9, dtype=torch.uint8)]
    fake = FakeCuda(monkeypatch, count=1)
    set_rng_state(saved, torch.device("cuda"))
    assert list(fake.restored) == [0] and int(fake.restored[0][0]) == 7


def test_the_cpu_generators_come_back():
    state = rng_state(torch.device("cpu"))
    expected = torch.rand(3)
    torch.rand(5)
    set_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
