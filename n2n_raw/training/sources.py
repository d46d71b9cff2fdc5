"""Training data: sources of images/mosaics and random crops, reproducible from (seed, step).

A source holds N training items (:class:`Item`: a window reader, so a store's crops are read from the file per
step and a store of any size trains in bounded memory) and cuts crops:
- sRGB: uint8 (H, W, 3) images → crops (3, P, P) float32 in [0, 1] (clean; noise is added per step).
- raw: float32 (H, W) mosaics in [0, 1] with their CFA → crops of P×P mosaic pixels at even offsets
  (in "rggb" mode offset by the CFA's R position so every crop starts with R), packed to (4, P/2, P/2).

A crop depends only on (seed, step, sample index) through the ``rng`` it is given
(:mod:`n2n_raw.training.batches` draws the batches).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from n2n_raw.cfa import CFAS, check_cfa
from n2n_raw.errors import InputError
from n2n_raw.io import camera_raw, sidd
from n2n_raw.io.images import list_images, read_rgb
from n2n_raw.io.sidd import PHONE_CFA
from n2n_raw.io.store import Store
from n2n_raw.method import bayer
from n2n_raw.method.gat_unet import clamp_profile, packed_profile
from n2n_raw.method.noise import add_raw_noise, raw_noise_params
from n2n_raw.method.noise_profile import estimate_profile
from n2n_raw.sim.dead_leaves import dead_leaves_set
from n2n_raw.sim.sidd_world import clean_mosaic


@dataclass
class Item:
    """One training image or mosaic, read on demand: ``crop(y, x, h, w)`` returns the window of rows y..y+h and
    columns x..x+w (sRGB: uint8 (h, w, 3); raw: float32 (h, w) mosaic in [0, 1]). ``shape`` is (H, W); ``cfa``
    the mosaic's layout (raw only); ``gt`` cuts the same window of the item's clean frame, where one is known;
    ``iso`` the frame's ISO (raw, where known: sets the level of redrawn noise, ``train --redraw-noise``).

    Items of a store read their windows from the file (:meth:`n2n_raw.io.store.Store.read_crop`), so a store
    of any size trains in bounded host memory; items of a folder or of the built-in data wrap arrays.
    """
    name: str
    shape: tuple[int, int]
    cfa: str | None
    crop: Callable[[int, int, int, int], np.ndarray]
    gt: Callable[[int, int, int, int], np.ndarray] | None = None
    iso: float | None = None


class Source(Protocol):
    """What the loop and the batch makers (:mod:`n2n_raw.training.batches`) need of a training source:
    :class:`SrgbSource` (clean crops; noise is drawn per step) or :class:`RawSource` (noisy packed mosaics)."""
    mode: str              # "srgb" or "raw"
    channels: int          # 3 (RGB) or 4 (packed)
    patch: int             # crop side, image / mosaic pixels
    items: list[Item]

    def __len__(self) -> int: ...

    def crop(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A random crop of item ``i``: sRGB uint8 (3, P, P), raw float32 (4, P/2, P/2)."""
        ...


class SrgbSource:
    mode = "srgb"
    channels = 3

    def __init__(self, items: list[Item], patch: int):
        for it in items:
            if it.shape[0] < patch or it.shape[1] < patch:
                raise InputError(f"{it.name}: image {it.shape[0]}×{it.shape[1]} is smaller than --patch-size {patch}")
        self.items, self.patch = items, patch

    @classmethod
    def from_images(cls, images: list[np.ndarray], names: list[str], patch: int) -> "SrgbSource":
        """A source of uint8 (H, W, 3) arrays held in memory."""
        return cls([in_memory(n, im) for im, n in zip(images, names)], patch)

    def __len__(self) -> int:
        return len(self.items)

    def crop(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A random clean crop of item ``i``: uint8 (3, P, P)."""
        it, p = self.items[i], self.patch
        y = int(rng.integers(0, it.shape[0] - p + 1))
        x = int(rng.integers(0, it.shape[1] - p + 1))
        return np.ascontiguousarray(it.crop(y, x, p, p).transpose(2, 0, 1))


class RawSource:
    mode = "raw"
    channels = 4

    def __init__(self, items: list[Item], patch: int, cfa_mode: str = "rggb", augment: bool = False):
        self.items, self.patch, self.cfa_mode, self.augment = items, patch, cfa_mode, augment
        margin = 2 if (cfa_mode == "rggb" or augment) else 0  # room for the CFA offset / re-phasing
        for it in items:
            if it.shape[0] < patch + margin or it.shape[1] < patch + margin:
                raise InputError(f"{it.name}: mosaic {it.shape[0]}×{it.shape[1]} is smaller than "
                                 f"--patch-size {patch} (+{margin} for the CFA phase)")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_gt(self) -> bool:
        """Whether every item knows its clean frame (needed by ``--target supervised``)."""
        return all(it.gt is not None for it in self.items)

    def noise_levels(self) -> torch.Tensor:
        """(N, 2) float32: each item's (a, b) of the synthetic shot + read noise at its ISO (variance a·x + b;
        :func:`n2n_raw.method.noise.raw_noise_params`). Raises InputError naming the first item without an ISO."""
        for it in self.items:
            if it.iso is None:
                raise InputError(f"--redraw-noise: {it.name} has no ISO (a store needs `iso` attributes, as "
                                 f"`prepare sidd` writes; a SIDD folder its METADATA or scene names)")
        return torch.tensor([raw_noise_params(it.iso) for it in self.items], dtype=torch.float32)

    def crop(self, i: int, rng: np.random.Generator, with_gt: bool = False) -> np.ndarray:
        """A random crop of item ``i``: float32 (4, P/2, P/2) packed; with ``with_gt`` (2, 4, P/2, P/2), the
        noisy crop and the same window of the clean frame (same offsets, flips and packing)."""
        cut = self._window(self.items[i], rng)
        noisy = cut(self.items[i].crop)
        return np.stack([noisy, cut(self.items[i].gt)]) if with_gt else noisy

    def _window(self, it: Item, rng: np.random.Generator) -> Callable[[Callable], np.ndarray]:
        """Draw a crop's offsets (and flips) once; the result cuts that window from any reader of the item."""
        p = self.patch
        h, w = it.shape
        if self.augment:
            # Cut p+2, flip/transpose, then re-phase to the item's layout by cropping (Liu et al. 2019).
            y = 2 * int(rng.integers(0, (h - p - 2) // 2 + 1))
            x = 2 * int(rng.integers(0, (w - p - 2) // 2 + 1))
            hf, vf, tr = (bool(b) for b in rng.integers(0, 2, size=3))

            def cut(read):
                m, cfa = bayer.augment(read(y, x, p + 2, p + 2), it.cfa, hflip=hf, vflip=vf, transpose=tr)
                if self.cfa_mode == "rggb":
                    m = bayer.unify_crop(m, cfa)[:p, :p]
                else:  # positional: restore the item's own phase so the packed channels keep their meaning
                    dy, dx = _phase_shift(cfa, it.cfa)
                    m = m[dy:dy + p, dx:dx + p]
                return bayer.pack(np.ascontiguousarray(m))
            return cut
        dy, dx = bayer.cfa_offset(it.cfa) if self.cfa_mode == "rggb" else (0, 0)
        y = dy + 2 * int(rng.integers(0, (h - dy - p) // 2 + 1))
        x = dx + 2 * int(rng.integers(0, (w - dx - p) // 2 + 1))
        return lambda read: bayer.pack(np.ascontiguousarray(read(y, x, p, p), dtype=np.float32))


def _phase_shift(cfa_now: str, cfa_want: str) -> tuple[int, int]:
    """(dy, dx) crop that turns a mosaic in ``cfa_now`` phase into ``cfa_want`` phase."""
    a, b = bayer.cfa_offset(cfa_now), bayer.cfa_offset(cfa_want)
    return (a[0] - b[0]) % 2, (a[1] - b[1]) % 2


# ---------------------------------------------------------------------------------------------- loading

def load_source(cfg) -> Source:
    """The training source for a resolved :class:`~n2n_raw.config.TrainConfig`."""
    if cfg.mode == "srgb":
        return SrgbSource(_load_srgb(cfg), cfg.patch_size)
    return RawSource(_load_raw(cfg), cfg.patch_size, cfg.cfa_mode, cfg.augment)


def in_memory(name: str, array: np.ndarray, cfa: str | None = None, gt: np.ndarray | None = None,
              iso: float | None = None) -> Item:
    """An item of an array held in memory (sRGB uint8 (H, W, 3) or raw float32 (H, W) with its ``cfa``)."""
    window = lambda a: (lambda y, x, h, w: a[y:y + h, x:x + w])  # noqa: E731
    return Item(name, tuple(array.shape[:2]), cfa, window(array), window(gt) if gt is not None else None, iso)


def _load_srgb(cfg) -> list[Item]:
    if cfg.data is None:
        side = max(256, cfg.patch_size)
        ims = dead_leaves_set(cfg.default_data_size, side, side, seed=1234)
        return [in_memory(f"dead-leaves #{i}", im) for i, im in enumerate(ims)]
    path = Path(cfg.data)
    if path.is_dir():
        return [in_memory(str(f), read_rgb(f)) for f in list_images(path)]
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    st = _open_store(path, "srgb")
    items = []
    for i, n in enumerate(st.names):
        shape, dtype = st.shape(i), st.dtype(i)
        if dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
            raise InputError(f"{path}: item {n} is {dtype} {shape}; sRGB items are uint8 (H, W, 3)")
        items.append(_store_item(st, i, path, None))
    return items


def _open_store(path: Path, mode: str):
    st = Store(path)
    if st.mode != mode:
        raise InputError(f"{path}: this store holds {st.mode} data, not {mode}")
    return st


def _store_item(st, i: int, path: Path, cfa: str | None) -> Item:
    """Item ``i`` of an open store: windows are read from the file at each crop (h5py hyperslab reads)."""
    gt = (lambda y, x, h, w: st.read_gt_crop(i, y, x, h, w)) if st.has_gt else None
    iso = st.attrs(i).get("iso")
    return Item(f"{path}[{st.names[i]}]", tuple(st.shape(i)[:2]), cfa,
                lambda y, x, h, w: st.read_crop(i, y, x, h, w), gt, _iso(iso))


def _iso(value) -> float | None:
    """An ISO attribute as a positive float, or None where it is missing or not a positive number."""
    try:
        iso = float(value)
    except (TypeError, ValueError):
        return None
    return iso if iso > 0 else None


def _camera_raw_items(files, override: str | None) -> list[Item]:
    """Camera raw files (DNG, NEF, ...) read whole, unclipped as ``prepare dng`` stores them: noise below
    black is kept, so dark means stay unbiased."""
    items = []
    for f in files:
        r = camera_raw.read_raw(f, clip=False)
        items.append(in_memory(str(f), r.mosaic, override or r.cfa))
    return items


def _load_raw(cfg) -> list[Item]:
    override = check_cfa(cfg.cfa) if cfg.cfa else None
    if cfg.photos:  # the user's own raw files, listed one by one (`n2n-raw fit`)
        return _camera_raw_items(cfg.photos, override)
    if cfg.data is None:
        return default_raw_items()
    path = Path(cfg.data)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        items: list[Item] = []
        try:
            frames = sidd.find_frames(path)
        except InputError:
            frames = []
        if frames:
            wants_gt = cfg.target != "n2n" or cfg.redraw_noise
            for fs in frames:
                # As `prepare sidd` reads it; with --cfa the metadata is read only for the ISO of redrawn noise.
                info = (sidd.frame_cfa(fs) if not override or cfg.redraw_noise else {"iso": None})
                gt = sidd.read_frame(fs.gt) if wants_gt and fs.gt else None
                items.append(in_memory(str(fs.noisy), sidd.read_frame(fs.noisy), override or info["cfa"], gt,
                                       _iso(info["iso"])))
            return items
        return _camera_raw_items(camera_raw.find_raws(path), override)
    st = _open_store(path, "raw")
    items = []
    for i in range(len(st)):
        a = st.attrs(i)
        cfa = override or a.get("cfa")
        if cfa is None:
            raise InputError(f"{path}: item {st.names[i]} has no CFA attribute; pass --cfa")
        if str(cfa).strip().upper() not in CFAS:
            raise InputError(f"{path}: item {st.names[i]} has an unknown CFA {cfa!r}; pass --cfa")
        shape = st.shape(i)
        if len(shape) != 2 or st.dtype(i).kind != "f":
            raise InputError(f"{path}: item {st.names[i]} is not a float (H, W) mosaic ({shape})")
        items.append(_store_item(st, i, path, str(cfa)))
    return items


def default_raw_items(count: int = 10, size: tuple[int, int] = (512, 768), seed: int = 1234) -> list[Item]:
    """The built-in raw training set: noisy SIDD-like mosaics of every phone's CFA (no download), each with its
    clean mosaic as ``gt``."""
    rng = np.random.default_rng(seed)
    phones = list(PHONE_CFA)
    isos = [100, 400, 800, 1600, 3200]
    items = []
    for k in range(count):
        phone = phones[k % len(phones)]
        iso = isos[(k // len(phones)) % len(isos)]
        clean = clean_mosaic(rng, size[0], size[1], PHONE_CFA[phone])
        noisy = add_raw_noise(rng, clean, *raw_noise_params(iso))
        items.append(in_memory(f"synthetic {phone} ISO {iso} #{k}", noisy, PHONE_CFA[phone], gt=clean, iso=iso))
    return items




def item_profile(item: Item, cfa_mode: str, side: int = 1024) -> tuple[list[float], list[float]]:
    """One item's profile per packed channel: the blind estimate
    (:func:`n2n_raw.method.noise_profile.estimate_profile`) of its central ``side``×``side`` window."""
    h, w = item.shape
    hh, ww = min(h, side) // 2 * 2, min(w, side) // 2 * 2
    y, x = (h - hh) // 4 * 2, (w - ww) // 4 * 2
    p = estimate_profile(np.asarray(item.crop(y, x, hh, ww), np.float32), shared=True)
    return packed_profile(p.a, p.b, item.cfa, cfa_mode)


def training_profile(items: list[Item], cfa_mode: str, count: int = 8, side: int = 1024
                     ) -> tuple[list[float], list[float]]:
    """One profile per packed channel for a training run: the median over up to ``count`` items of each one's
    :func:`item_profile`."""
    picks = items[:: max(1, len(items) // count)][:count]
    arr = np.asarray([item_profile(it, cfa_mode, side) for it in picks], np.float64)  # (items, 2, 4)
    med = np.median(arr, axis=0)
    return med[0].tolist(), med[1].tolist()


def item_profiles(items: list[Item], cfa_mode: str, side: int = 1024) -> torch.Tensor:
    """Every item's :func:`item_profile`, as :meth:`~n2n_raw.method.gat_unet.GatUNet.set_profile` would use it:
    float32 (items, 2, 4), the a's then the b's."""
    arr = torch.as_tensor(np.asarray([item_profile(it, cfa_mode, side) for it in items], np.float32))
    a, b = arr[:, 0], arr[:, 1]
    return torch.stack([clamp_profile(a, b), b], 1)
