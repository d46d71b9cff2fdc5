"""DNG reading (rawpy), writing (pidng), previews and prepare_dng (n2n_raw.io.dng)."""
import sys
import warnings

import numpy as np
import pytest

from n2n_raw.cfa import CFAS
from n2n_raw.errors import InputError
from n2n_raw.io import camera_raw, dng, scratch_dng
from n2n_raw.jobs.prepare import prepare_dng
from n2n_raw.io.store import Store
from n2n_raw.sim.dead_leaves import dead_leaves

H, W = 34, 50  # even, W not a multiple of 4 (10-bit rows need padding)


@pytest.fixture
def pidng():
    return pytest.importorskip("pidng")


def expected_mosaic(raw: np.ndarray, black, white) -> np.ndarray:
    b = np.tile(np.asarray(black, np.float64).reshape(2, 2), (raw.shape[0] // 2, raw.shape[1] // 2))
    return np.clip((raw - b) / (white - b), 0, 1).astype(np.float32)


def random_raw(bits, seed=0, low=0, shape=(H, W)):
    rng = np.random.default_rng(seed)
    return rng.integers(low, 1 << bits, shape).astype(np.uint16)


def colour_raw(cfa, bits, seed=0, black=64, shape=(H, W)):
    """Raw values of a natural-like scene with camera-like channel levels (G brightest)."""
    rng = np.random.default_rng(seed)
    rgb = dead_leaves(rng, *shape) * np.array([0.45, 0.9, 0.6], np.float32)
    cell = np.array([["RGB".index(c) for c in cfa[:2]], ["RGB".index(c) for c in cfa[2:]]])
    idx = np.tile(cell, (shape[0] // 2, shape[1] // 2))
    m = np.take_along_axis(rgb, idx[..., None], axis=2)[..., 0]
    top = (1 << bits) - 1
    return np.round(black + m * (top - black)).astype(np.uint16)


@pytest.mark.parametrize("bits", [10, 12, 16])
@pytest.mark.parametrize("cfa", CFAS)
def test_write_read_round_trip(pidng, tmp_path, cfa, bits):
    raw = random_raw(bits, seed=bits)
    top = (1 << bits) - 1
    raw[0, 0], raw[0, 1], raw[1, 1] = top, 0, 1  # saturated; under black (clipped to 0)
    black = [bits, bits + 1, bits + 2, bits + 3] if cfa in ("GRBG", "BGGR") else 3 * bits
    path = scratch_dng.write_dng(tmp_path / "x.dng", raw, cfa, bits, black_level=black)
    img = camera_raw.read_dng(path)
    assert img.cfa == cfa and img.bits == bits and img.white_level == top
    blk = black if isinstance(black, list) else [black] * 4
    assert img.black_level == tuple(float(b) for b in blk)
    assert img.mosaic.dtype == np.float32 and img.mosaic.shape == (H, W)
    assert np.array_equal(img.mosaic, expected_mosaic(raw, blk, top))
    assert img.mosaic.min() == 0.0 and img.mosaic.max() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dng"]  # no temporary left behind


def test_write_dng_white_level_and_refusals(pidng, tmp_path):
    raw = random_raw(12, seed=1) % 3000
    out = tmp_path / "w.dng"
    scratch_dng.write_dng(out, raw, "gbrg", 12, black_level=100, white_level=3000)
    img = camera_raw.read_dng(out)
    assert img.cfa == "GBRG" and img.white_level == 3000 and img.bits == 12
    assert np.array_equal(img.mosaic, expected_mosaic(raw, [100] * 4, 3000))
    with pytest.raises(InputError, match="already exists"):
        scratch_dng.write_dng(out, raw, "RGGB", 12)
    scratch_dng.write_dng(out, raw, "RGGB", 12, force=True)
    assert camera_raw.read_dng(out).cfa == "RGGB"
    with pytest.raises(ValueError, match="even"):
        scratch_dng.write_dng(tmp_path / "odd.dng", raw[:33], "RGGB", 12)
    with pytest.raises(ValueError, match=r"\[0, 1023\]"):
        scratch_dng.write_dng(tmp_path / "big.dng", raw, "RGGB", 10)
    with pytest.raises(ValueError, match="bits"):
        scratch_dng.write_dng(tmp_path / "b14.dng", raw, "RGGB", 14)
    with pytest.raises(InputError, match="^--cfa: unknown CFA"):
        scratch_dng.write_dng(tmp_path / "c.dng", raw, "XTRANS", 12)


def test_write_dng_without_pidng_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pidng.core", None)  # makes `import pidng.core` fail
    with pytest.raises(InputError, match=r"x\.dng: .*pip install 'n2n-raw\[dng\]'"):
        scratch_dng.write_dng(tmp_path / "x.dng", random_raw(12), "RGGB", 12)
    assert not (tmp_path / "x.dng").exists()


@pytest.mark.parametrize("cfa,bits", [("GRBG", 12), ("BGGR", 10), ("RGGB", 16)])
def test_write_denoised_dng_round_trip(pidng, tmp_path, cfa, bits):
    top = (1 << bits) - 1
    raw = random_raw(bits, seed=2, low=64)  # no values under black: normalising loses nothing
    src = scratch_dng.write_dng(tmp_path / "src.dng", raw, cfa, bits, black_level=64,
                        as_shot_neutral=(0.5, 1.0, 0.7))
    img = camera_raw.read_dng(src)
    out = dng.write_denoised_dng(src, img.mosaic, tmp_path / "out.dng")
    back = camera_raw.read_dng(out)
    k = 1 << (16 - bits)  # samples and levels scaled to 16 bits (a white balance is stated)
    assert back.cfa == cfa and back.bits == 16 and back.white_level == top * k
    assert back.black_level == tuple(v * k for v in img.black_level)
    np.testing.assert_allclose(back.mosaic, img.mosaic, rtol=0, atol=1e-6)
    assert np.allclose(back.as_shot_neutral, (0.5, 1.0, 0.7), atol=1e-3)
    assert np.allclose(back.color_matrix, img.color_matrix, atol=1e-3)
    # a denoised mosaic: denormalised with the source's levels, rounded, clipped
    den = np.full((H, W), 0.5, np.float32)
    den[0, 0], den[0, 1] = 1.7, -0.3
    out2 = dng.write_denoised_dng(src, den, tmp_path / "out2.dng")
    got = camera_raw.read_dng(out2)
    assert got.mosaic[0, 0] == 1.0 and got.mosaic[0, 1] == 0.0
    expect = np.float32((np.rint(0.5 * k * (top - 64) + 64 * k) - 64 * k) / (k * (top - 64)))
    assert np.all(got.mosaic[1:] == expect)
    with pytest.raises(InputError, match="already exists"):
        dng.write_denoised_dng(src, den, out2)
    with pytest.raises(ValueError, match="shape"):
        dng.write_denoised_dng(src, den[:, :-2], tmp_path / "out3.dng")


def test_render_preview_and_save_png(pidng, tmp_path):
    raw = colour_raw("GRBG", 12, seed=3)
    src = scratch_dng.write_dng(tmp_path / "p.dng", raw, "GRBG", 12, black_level=64)
    rgb = dng.render_preview(src)
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    assert rgb.std() > 0
    dark = dng.render_preview(src, np.zeros((H, W), np.float32))
    bright = dng.render_preview(src, np.ones((H, W), np.float32))
    assert dark.shape == bright.shape == (H, W, 3)
    assert dark.max() <= 5 and bright.min() >= 250
    # the file itself is not changed by rendering another mosaic into its buffer
    assert np.array_equal(dng.render_preview(src), rgb)
    png = dng.save_png(tmp_path / "p.png", rgb)
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(png)), rgb)
    with pytest.raises(InputError, match="already exists"):
        dng.save_png(png, rgb)
    dng.save_png(png, dark, force=True)
    assert np.array_equal(np.asarray(Image.open(png)), dark)


def test_read_dng_rejects_bad_files(pidng, tmp_path):
    with pytest.raises(InputError, match=r"missing\.dng: no such file"):
        camera_raw.read_dng(tmp_path / "missing.dng")
    with pytest.raises(InputError, match="is a folder"):
        camera_raw.read_dng(tmp_path)
    junk = tmp_path / "junk.dng"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(InputError, match=r"^.*junk\.dng: not a raw file"):
        camera_raw.read_dng(junk)
    good = scratch_dng.write_dng(tmp_path / "good.dng", random_raw(12), "RGGB", 12)
    data = good.read_bytes()
    for n in (len(data) // 2, len(data) - 16, 100):
        cut = tmp_path / f"cut{n}.dng"
        cut.write_bytes(data[:n])
        with pytest.raises(InputError, match=rf"cut{n}\.dng: "):
            camera_raw.read_dng(cut)


def _pidng_raw(path, data, photometric, samples, bits):
    """Write a DNG with pidng's low-level API (shapes write_dng refuses to make)."""
    from pidng.core import RAW2DNG
    from pidng.defs import CFAPattern
    from pidng.dng import DNGTags, Tag
    h, w = data.shape[0], data.shape[1] // samples
    t = DNGTags()
    for tag, v in [(Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
                   (Tag.PhotometricInterpretation, photometric), (Tag.SamplesPerPixel, samples),
                   (Tag.BitsPerSample, [bits] * samples), (Tag.WhiteLevel, (1 << bits) - 1),
                   (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, CFAPattern.RGGB),
                   (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                   (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.Make, "t"), (Tag.Model, "t")]:
        t.set(tag, v)
    r = RAW2DNG()
    r.options(t, path="", compress=False)
    path.write_bytes(r.convert(np.ascontiguousarray(data, np.uint16)))
    return path


def test_read_dng_rejects_odd_size_and_linear_dng(pidng, tmp_path):
    from pidng.defs import PhotometricInterpretation as PI
    odd = _pidng_raw(tmp_path / "odd.dng", random_raw(16, shape=(35, 50)), PI.Color_Filter_Array, 1, 16)
    with pytest.raises(InputError, match=r"odd\.dng: odd-sized mosaic 35×50"):
        camera_raw.read_dng(odd)
    lin = _pidng_raw(tmp_path / "lin.dng", random_raw(16, shape=(H, 3 * W)), PI.Linear_Raw, 3, 16)
    with pytest.raises(InputError, match=r"lin\.dng: a linear \(demosaiced\) DNG"):
        camera_raw.read_dng(lin)
    with pytest.raises(InputError, match=r"lin\.dng: a linear"):
        dng.render_preview(lin)


def test_find_dngs(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        camera_raw.find_dngs(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no \.dng files found"):
        camera_raw.find_dngs(tmp_path)
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ["b/c/z.DNG", "a.dng", "b/y.Dng", "b/notes.txt", "b/x.dng.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert camera_raw.find_dngs(tmp_path) == [tmp_path / "a.dng", tmp_path / "b/c/z.DNG", tmp_path / "b/y.Dng"]
    assert camera_raw.find_dngs(tmp_path / "a.dng") == [tmp_path / "a.dng"]
    with pytest.raises(InputError, match="not a .dng file"):
        camera_raw.find_dngs(tmp_path / "b/notes.txt")


def test_prepare_dng(pidng, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    names = {"a.dng": ("RGGB", 12), "sub/b.DNG": ("GRBG", 10), "sub/c.dng": ("BGGR", 16)}
    for i, (name, (cfa, bits)) in enumerate(names.items()):
        scratch_dng.write_dng(src / name, colour_raw(cfa, bits, seed=i), cfa, bits, black_level=16)
    (src / "sub" / "broken.dng").write_bytes(b"not a dng at all" * 10)
    calls = []
    out = tmp_path / "store.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # correct CFAs: no self-check warning
        summary = prepare_dng(src, out, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert summary["frames"] == 3 and summary["skipped"] == 1 and summary["seconds"] >= 0
    assert len(summary["errors"]) == 1 and "broken.dng" in summary["errors"][0]
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    store = Store(out)
    assert store.mode == "raw" and len(store) == 3
    assert store.sources == ["a.dng", "sub/b.DNG", "sub/c.dng"]
    for i, name in enumerate(["a.dng", "sub/b.DNG", "sub/c.dng"]):
        attrs = store.attrs(i)
        assert attrs["source"] == name and attrs["cfa"] == names[name][0] and attrs["bits"] == names[name][1]
        assert np.array_equal(store.read(i), camera_raw.read_dng(src / name).mosaic)
    store.close()
    with pytest.raises(InputError, match="already exists"):
        prepare_dng(src, out)
    assert prepare_dng(src, out, force=True, workers=1)["frames"] == 3


def test_prepare_dng_warns_on_cfa_mismatch_and_fails_when_nothing_readable(pidng, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # GRBG data labelled RGGB: the greens sit on the other diagonal
    scratch_dng.write_dng(src / "wrong.dng", colour_raw("GRBG", 12, seed=5), "RGGB", 12, black_level=16)
    with pytest.warns(UserWarning, match=r"wrong\.dng: CFA self-check"):
        assert prepare_dng(src, tmp_path / "s.h5")["frames"] == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.dng").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"bad: none of the 1 raw files could be read"):
        prepare_dng(bad, tmp_path / "t.h5")
    assert not (tmp_path / "t.h5").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
