"""Training from a store reads crops on demand: the same batches as the images held in memory, no whole reads."""
import numpy as np
import pytest
import torch

from n2n_raw.config import TrainConfig
from n2n_raw.training.batches import make_batch
from n2n_raw.training.sources import SrgbSource, load_source
from n2n_raw.io.store import Store, StoreWriter


def _srgb_store(path, n=7, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (64 + 5 * i, 70 + 3 * i, 3), dtype=np.uint8) for i in range(n)]
    with StoreWriter(path, "srgb") as w:
        for im in images:
            w.add(im)
    return images


def test_srgb_store_batches_equal_the_in_memory_batches(tmp_path, monkeypatch):
    images = _srgb_store(tmp_path / "s.h5")
    monkeypatch.setattr(Store, "read", lambda self, i: pytest.fail("a whole image was read"))
    lazy = load_source(TrainConfig(mode="srgb", data=str(tmp_path / "s.h5"), patch_size=64).resolved())
    memory = SrgbSource.from_images(images, [str(i) for i in range(len(images))], 64)
    for step, spe in ((0, None), (3, None), (11, None), (2, 1)):
        a = make_batch(lazy, step, 4, 5, spe)
        b = make_batch(memory, step, 4, 5, spe)
        assert a.dtype == torch.float32 and torch.equal(a, b), step


def test_srgb_store_items_are_checked_without_reading_them(tmp_path):
    with StoreWriter(tmp_path / "bad.h5", "srgb") as w:
        w.add(np.zeros((64, 64, 3), np.uint8))
    import h5py
    with h5py.File(tmp_path / "bad.h5", "a") as f:  # a foreign item the writer would refuse
        f["items"].create_dataset("000001", data=np.zeros((64, 64), np.float32))
    from n2n_raw.errors import InputError
    with pytest.raises(InputError, match="sRGB items are uint8"):
        load_source(TrainConfig(mode="srgb", data=str(tmp_path / "bad.h5"), patch_size=64).resolved())


def test_training_from_a_store_writes_its_pictures(tmp_path):
    from n2n_raw.training.loop import train
    _srgb_store(tmp_path / "s.h5", n=3)
    cfg = TrainConfig(mode="srgb", data=str(tmp_path / "s.h5"), steps=2, epochs=1, patch_size=64, batch_size=2,
                      log_every=1, device="cpu")
    train(cfg, tmp_path / "run", log=lambda s: None)
    assert (tmp_path / "run" / "comparison.png").is_file()
