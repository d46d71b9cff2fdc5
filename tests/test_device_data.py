"""The on-device cropper: every crop is a window of its item, raw crops keep the CFA phase, fixed shapes."""
import numpy as np
import pytest
import torch

from n2n_raw.cfa import CFAS
from n2n_raw.training.batches import DeviceCropper, device_indices, sample_indices
from n2n_raw.training.sources import Item, RawSource, SrgbSource


def _windows_equal(img, crop):
    """Offsets (y, x) at which crop (C, P, P) equals a window of img (C, H, W)."""
    p = crop.shape[-1]
    return [(y, x) for y in range(img.shape[1] - p + 1) for x in range(img.shape[2] - p + 1)
            if torch.equal(img[:, y:y + p, x:x + p], crop)]


def test_srgb_crops_are_windows_of_their_items():
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 256, (67 + 3 * i, 71 + i, 3), dtype=np.uint8) for i in range(3)]
    dc = DeviceCropper(SrgbSource.from_images(ims, ["a", "b", "c"], 64), "cpu")
    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([2, 0, 1, 2, 2])
    crops = dc.crops(idx, g)
    assert crops.shape == (5, 3, 64, 64) and crops.dtype == torch.float32
    offsets = set()
    for b, i in enumerate(idx.tolist()):
        img = torch.from_numpy(ims[i]).permute(2, 0, 1).float() / 255
        found = _windows_equal(img, crops[b])
        assert found, f"crop {b} is not a window of item {i}"
        offsets.add((i, found[0]))
    assert len(offsets) > 1  # offsets are random, not all the same


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("mode", ["rggb", "positional"])
def test_raw_crops_keep_the_phase(cfa, mode):
    h, w = 141, 150
    coded = np.zeros((h, w), np.float32)  # value = colour code of the pixel: R=1, G=2, B=3
    for k, c in enumerate(cfa):
        coded[k // 2::2, k % 2::2] = "RGB".index(c) + 1
    item = Item("m", (h, w), cfa, lambda y, x, hh, ww: coded[y:y + hh, x:x + ww])
    dc = DeviceCropper(RawSource([item], 128, cfa_mode=mode), "cpu")
    g = torch.Generator().manual_seed(3)
    packed = dc.crops(torch.zeros(16, dtype=torch.long), g)
    assert packed.shape == (16, 4, 64, 64)
    colours = packed.amax(dim=(-1, -2))  # each channel holds one colour only
    assert torch.equal(colours, packed.amin(dim=(-1, -2)))
    want = [1, 2, 2, 3] if mode == "rggb" else ["RGB".index(c) + 1 for c in cfa]
    assert colours.tolist() == [want] * 16


def test_device_indices_match_the_host_sampler():
    idx = device_indices(10, 7, 4, 5, 2, torch.device("cpu"))
    assert idx.tolist() == sample_indices(10, 7, 4, 5, 2).tolist()


def test_training_with_data_on_device_is_reproducible(tmp_path):
    from safetensors.torch import load_file

    from n2n_raw.config import TrainConfig
    from n2n_raw.training.loop import train

    finals = []
    for name in ("a", "b"):
        cfg = TrainConfig(mode="srgb", steps=4, epochs=2, patch_size=64, batch_size=2, default_data_size=3,
                          seed=7, data_on_device="on", pictures=False, log_every=2, device="cpu")
        train(cfg, tmp_path / name, log=lambda s: None)
        finals.append(load_file(str(sorted((tmp_path / name).glob("ckpt-*.safetensors"))[-1])))
    assert finals[0].keys() == finals[1].keys()
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
