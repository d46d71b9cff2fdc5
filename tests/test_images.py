"""Image folders, RGB decoding, PNG writing and the ImageNet-val filter (`prepare srgb`), on small generated files."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from n2n_raw.errors import InputError
from n2n_raw.jobs.prepare import prepare_srgb
from n2n_raw.io.images import (IMAGE_EXTS, list_images, read_rgb, validation_folder_images,
                               write_png)
from n2n_raw.io.store import Store

from realdata import VALIDATION, validation_dir  # tests/realdata.py: N2N_RAW_VALIDATION_DATA
LO, HI = 32, 48  # min_size / max_size used by the prepare tests


def _rgb(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """11 image files (6 kept, 3 too small/large, 2 unreadable) plus files that are not images."""
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    arrays = {}
    arrays["a.png"] = _rgb(rng, 40, 40)
    Image.fromarray(arrays["a.png"]).save(d / "a.png")
    Image.fromarray(_rgb(rng, 48, 32)).save(d / "b.jpg", quality=95)  # w 32, h 48: both bounds inclusive
    arrays["gray.png"] = rng.integers(0, 256, size=(36, 40), dtype=np.uint8)
    Image.fromarray(arrays["gray.png"], mode="L").save(d / "gray.png")
    Image.fromarray(_rgb(rng, 44, 36)).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    arrays["rgba.png"] = rng.integers(0, 256, size=(40, 44, 4), dtype=np.uint8)
    Image.fromarray(arrays["rgba.png"], mode="RGBA").save(d / "rgba.png")
    arrays["sub/c.PNG"] = _rgb(rng, 33, 47)
    Image.fromarray(arrays["sub/c.PNG"]).save(d / "sub" / "c.PNG")
    # skipped by size
    Image.fromarray(_rgb(rng, 40, 31)).save(d / "small.png")
    Image.fromarray(_rgb(rng, 49, 40)).save(d / "tall.png")
    Image.fromarray(_rgb(rng, 64, 64)).save(d / "wide.jpg")
    # unreadable: a JPEG cut in half (its header says 40×40), random bytes named .png
    buf = io.BytesIO()
    Image.fromarray(_rgb(rng, 40, 40)).save(buf, format="JPEG", quality=95)
    (d / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "noise.png").write_bytes(rng.integers(0, 256, size=2000, dtype=np.uint8).tobytes())
    # not images / hidden: ignored entirely
    (d / "notes.txt").write_text("not an image")
    Image.fromarray(_rgb(rng, 40, 40)).save(d / ".hidden.png")
    return d, arrays


KEPT = ["a.png", "b.jpg", "cmyk.jpg", "gray.png", "rgba.png", "sub/c.PNG"]  # sorted relative paths


def _store_items(path):
    s = Store(path)
    try:
        return [(s.attrs(i), s.read(i)) for i in range(len(s))], s.sources, s.mode
    finally:
        s.close()


# ----------------------------------------------------------------------------------------------- listing

def test_list_images_sorted_recursive_case_insensitive(folder):
    d, _ = folder
    rel = [p.relative_to(d).as_posix() for p in list_images(d)]
    assert rel == sorted(KEPT + ["noise.png", "small.png", "tall.png", "trunc.jpg", "wide.jpg"])
    flat = [p.name for p in list_images(d, recursive=False)]
    assert "c.PNG" not in flat and len(flat) == 10
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm"} <= set(IMAGE_EXTS)


def test_list_images_errors(tmp_path):
    with pytest.raises(InputError, match=r"^.*nope: no such folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(InputError) as e:
        list_images(tmp_path / "empty")
    assert str(e.value).startswith(str(tmp_path / "empty") + ":")


def test_validation_folder_flat_and_test_subfolder(tmp_path):
    rng = np.random.default_rng(1)
    flat = tmp_path / "BSD300"
    flat.mkdir()
    for n in ("2.png", "10.png", "1.png"):
        Image.fromarray(_rgb(rng, 12, 12)).save(flat / n)
    assert [p.name for p in validation_folder_images(flat)] == ["1.png", "10.png", "2.png"]  # by name
    # reference layout: BSD300/test/*.png (a train/ folder beside it is not used)
    ref = tmp_path / "ref" / "BSD300"
    (ref / "test").mkdir(parents=True)
    (ref / "train").mkdir()
    for n in ("b.png", "a.png"):
        Image.fromarray(_rgb(rng, 12, 12)).save(ref / "test" / n)
    Image.fromarray(_rgb(rng, 12, 12)).save(ref / "train" / "z.png")
    assert [p.relative_to(ref).as_posix() for p in validation_folder_images(ref)] == ["test/a.png", "test/b.png"]
    # an empty test/ folder does not hide the flat images
    (flat / "test").mkdir()
    assert len(validation_folder_images(flat)) == 3
    with pytest.raises(InputError):
        validation_folder_images(tmp_path / "missing")


def test_shared_validation_sets():
    validation_dir()
    counts = {name: len(validation_folder_images(VALIDATION / name)) for name in ("Kodak", "BSD300", "Set14")}
    assert counts == {"Kodak": 24, "BSD300": 100, "Set14": 12}
    img = read_rgb(validation_folder_images(VALIDATION / "Kodak")[0])
    assert img.dtype == np.uint8 and img.shape in ((512, 768, 3), (768, 512, 3))


# ----------------------------------------------------------------------------------------------- decoding

def test_read_rgb_modes(folder):
    d, arrays = folder
    a = read_rgb(d / "a.png")
    assert a.dtype == np.uint8 and a.shape == (40, 40, 3) and a.flags.c_contiguous
    np.testing.assert_array_equal(a, arrays["a.png"])
    g = read_rgb(d / "gray.png")
    assert g.shape == (36, 40, 3)
    for c in range(3):
        np.testing.assert_array_equal(g[:, :, c], arrays["gray.png"])
    np.testing.assert_array_equal(read_rgb(d / "rgba.png"), arrays["rgba.png"][:, :, :3])  # alpha dropped
    cmyk = read_rgb(d / "cmyk.jpg")
    with Image.open(d / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(cmyk, np.asarray(im.convert("RGB")))
    assert cmyk.shape == (44, 36, 3)


def test_read_rgb_palette_and_16bit(tmp_path):
    rng = np.random.default_rng(2)
    rgb = _rgb(rng, 10, 12)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        np.testing.assert_array_equal(read_rgb(tmp_path / "p.png"), np.asarray(im.convert("RGB")))
    v16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(v16).save(tmp_path / "g16.png")
    got = read_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(got[:, :, 0], [[0, 1, 255, 128]])  # scaled, not clipped at 255
    np.testing.assert_array_equal(got[:, :, 0], got[:, :, 2])


def test_read_rgb_unreadable(folder, tmp_path):
    d, _ = folder
    for name in ("trunc.jpg", "noise.png", "notes.txt"):
        with pytest.raises(InputError) as e:
            read_rgb(d / name)
        msg = str(e.value)
        assert msg.startswith(f"{d / name}: unreadable image") and "\n" not in msg
    with pytest.raises(InputError, match="no such file"):
        read_rgb(tmp_path / "missing.png")


# -------------------------------------------------------------------------------------------------- PNG out

def test_write_png_roundtrip_atomic_and_force(tmp_path):
    rng = np.random.default_rng(3)
    img = _rgb(rng, 9, 13)
    out = tmp_path / "o" / "x.png"
    assert write_png(out, img) == out
    np.testing.assert_array_equal(read_rgb(out), img)
    with pytest.raises(InputError, match="already exists"):
        write_png(out, img[::-1].copy())
    np.testing.assert_array_equal(read_rgb(out), img)  # untouched
    write_png(out, img[::-1].copy(), force=True)
    np.testing.assert_array_equal(read_rgb(out), img[::-1])
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]  # no temporary left
    with pytest.raises(ValueError):
        write_png(tmp_path / "f.png", img.astype(np.float32))


# ---------------------------------------------------------------------------------------------- prepare srgb

def test_prepare_counts_pixels_order(folder, tmp_path):
    d, arrays = folder
    calls = []
    out = tmp_path / "s.h5"
    r = prepare_srgb(d, out, min_size=LO, max_size=HI, workers=1, progress=lambda i, n: calls.append((i, n)))
    assert (r["kept"], r["skipped_size"], r["unreadable"], r["total"]) == (6, 3, 2, 11)
    assert sorted(r["unreadable_files"]) == ["noise.png", "trunc.jpg"]
    assert r["seconds"] > 0 and r["images_per_s"] > 0
    assert calls == [(i, 11) for i in range(1, 12)]
    items, sources, mode = _store_items(out)
    assert mode == "srgb"
    assert [a["source"] for a, _ in items] == KEPT
    for attrs, arr in items:
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert LO <= arr.shape[0] <= HI and LO <= arr.shape[1] <= HI
        np.testing.assert_array_equal(arr, read_rgb(d / attrs["source"]))
    by_name = {a["source"]: x for a, x in items}
    np.testing.assert_array_equal(by_name["a.png"], arrays["a.png"])
    np.testing.assert_array_equal(by_name["sub/c.PNG"], arrays["sub/c.PNG"])
    gray = by_name["gray.png"]
    assert (gray[:, :, 0] == gray[:, :, 1]).all() and (gray[:, :, 1] == gray[:, :, 2]).all()
    np.testing.assert_array_equal(gray[:, :, 0], arrays["gray.png"])
    assert by_name["b.jpg"].shape == (48, 32, 3)
    assert sources["kept"] == 6 and sources["min_size"] == LO and sources["max_size"] == HI


def test_prepare_workers_give_identical_stores(folder, tmp_path):
    d, _ = folder
    r1 = prepare_srgb(d, tmp_path / "w1.h5", min_size=LO, max_size=HI, workers=1)
    r2 = prepare_srgb(d, tmp_path / "w2.h5", min_size=LO, max_size=HI, workers=2)
    assert {k: r1[k] for k in ("kept", "skipped_size", "unreadable")} == \
        {k: r2[k] for k in ("kept", "skipped_size", "unreadable")}
    i1, _, _ = _store_items(tmp_path / "w1.h5")
    i2, _, _ = _store_items(tmp_path / "w2.h5")
    assert [a for a, _ in i1] == [a for a, _ in i2]
    for (_, x1), (_, x2) in zip(i1, i2):
        np.testing.assert_array_equal(x1, x2)


def test_prepare_refuses_existing_output(folder, tmp_path):
    d, _ = folder
    out = tmp_path / "s.h5"
    out.write_bytes(b"mine")
    with pytest.raises(InputError) as e:
        prepare_srgb(d, out, min_size=LO, max_size=HI, workers=1)
    assert str(e.value).startswith(f"{out}:") and "exists" in str(e.value)
    assert out.read_bytes() == b"mine"
    prepare_srgb(d, out, min_size=LO, max_size=HI, workers=1, force=True)
    assert len(_store_items(out)[0]) == 6


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_interrupted_leaves_nothing(folder, tmp_path, workers):
    d, _ = folder
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    seen = []

    def boom(done, total):
        if done == 5:
            seen.extend(p.name for p in out_dir.iterdir())  # the partial store exists at this point
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        prepare_srgb(d, out_dir / "s.h5", min_size=LO, max_size=HI, workers=workers, progress=boom)
    assert len(seen) == 1 and seen[0].startswith(".s.h5.partial")
    assert list(out_dir.iterdir()) == []


def test_prepare_nothing_kept_and_bad_options(folder, tmp_path):
    d, _ = folder
    out = tmp_path / "s.h5"
    with pytest.raises(InputError) as e:
        prepare_srgb(d, out, min_size=200, max_size=300, workers=1)
    assert str(e.value).startswith(f"{d}:")
    assert list(tmp_path.iterdir()) == [d]  # neither the store nor a temporary file
    with pytest.raises(InputError):
        prepare_srgb(d, out, min_size=50, max_size=40)
    with pytest.raises(InputError):
        prepare_srgb(d, out, workers=0)
    with pytest.raises(InputError, match="no such folder"):
        prepare_srgb(tmp_path / "missing", out)
