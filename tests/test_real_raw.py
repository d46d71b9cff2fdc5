"""Real camera files (datasets/real_raw.json; made by cameras and other programs, not by this project).

The denoised DNG must be its source with new pixels: every tag carried (read back by tifffile and, where
installed, exiftool: two readers that share no code with n2n-raw), orientation kept, stored pixels round-tripped
bit-exactly, and what is not a Bayer mosaic refused with one line. Skipped where the folder is absent.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from n2n_raw.errors import InputError
from n2n_raw.io import camera_raw, dng

from conftest import REPO, assert_one_line_error, cli
from realdata import REAL_RAW as REAL
from realdata import needs_real_raw

sys.path.insert(0, str(REPO / "benchmarks"))
from render_check import with_orientation  # noqa: E402  (one copy: the benchmark renders the same portrait)

pytestmark = needs_real_raw

DNGS = ["canon_550d_colorchart.dng", "pi_bggr_scene.dng", "pi_gbrg_no_blacklevel.dng",
        "burst_lowlight/image_21.dng"]
# Tags the writer rewrites (storage) or adds; everything else must be equal.
REWRITTEN = set(dng.STORAGE_TAGS) | {dng.PROCESSING_SOFTWARE}
# Raw-unit levels, scaled with the samples to 16 bits (×4 for the 14-bit Canon, ×64 for the 10-bit Pi files
# that state a white balance; the Pi file without one keeps its units): checked as scaled, below.
LEVELS = {50714: "BlackLevel", 50715: "BlackLevelDeltaH", 50716: "BlackLevelDeltaV", 50717: "WhiteLevel"}
SCALE = {"canon_550d_colorchart.dng": 4, "pi_bggr_scene.dng": 64, "pi_gbrg_no_blacklevel.dng": 1,
         "burst_lowlight/image_21.dng": 64}
EXIFTOOL_STORAGE = {"BitsPerSample", "StripOffsets", "StripByteCounts", "RowsPerStrip", "PlanarConfiguration",
                    "TileWidth", "TileLength", "TileOffsets", "TileByteCounts", "SampleFormat",
                    "ProcessingSoftware", "SubfileType", "Compression"}


def _tags(page) -> dict:
    """{code: value} of one tifffile page; a repeated tag keeps its last value (as LibRaw reads it)."""
    out = {}
    for t in page.tags.values():
        out[t.code] = t.value
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list, np.ndarray)) or isinstance(b, (tuple, list, np.ndarray)):
        return np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    return a == b


def _identity_dng(src: Path, out: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-black-level file warns; tested below
        r = camera_raw.read_raw(src, clip=False)  # unclipped: values below black come back too
        return dng.write_denoised_dng(src, r.mosaic, out)


@pytest.mark.parametrize("name", DNGS)
def test_every_tag_carried_tifffile(tmp_path, name):
    src = REAL / name
    out = _identity_dng(src, tmp_path / "out.dng")
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(out) as b:
        ta, tb = _tags(a.pages[0]), _tags(b.pages[0])
        assert len(b.pages) == 1 and a.byteorder == b.byteorder
    k = SCALE[name]
    for code, value in ta.items():
        if code in REWRITTEN:
            continue
        assert code in tb, f"tag {code} of {name} was dropped"
        if code in LEVELS:
            value = np.asarray(value, np.float64) * k
            assert np.allclose(np.asarray(tb[code], np.float64), value, rtol=0, atol=1e-6), (code, tb[code], value)
            continue
        assert _same(value, tb[code]), f"tag {code} of {name} changed: {value!r} -> {tb[code]!r}"
    added = set(tb) - set(ta) - REWRITTEN
    assert added <= {50717}, added  # WhiteLevel only where the source relied on 2**bits - 1
    if 50717 not in ta:
        assert tb[50717] == ((1 << ta[258]) - 1) * k
    assert tb[258] == 16 and tb[259] == 1 and tb[262] == 32803 and tb[dng.PROCESSING_SOFTWARE].startswith("n2n-raw")


def test_canon_named_tags_and_exif_kept(tmp_path):
    """The tags a DNG writer is most likely to drop or re-invent, by name."""
    src = REAL / "canon_550d_colorchart.dng"
    out = _identity_dng(src, tmp_path / "out.dng")
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(out) as b:
        pa, pb = a.pages[0].tags, b.pages[0].tags
        for name in ["Make", "Model", "UniqueCameraModel", "ColorMatrix1", "AsShotNeutral", "BaselineExposure",
                     "BaselineNoise", "BaselineSharpness", "LinearResponseLimit", "AnalogBalance",
                     "DefaultCropOrigin", "DefaultCropSize", "ActiveArea", "Artist", "Copyright", "Orientation",
                     "DNGVersion"]:
            assert _same(pa[name].value, pb[name].value), name
        assert pb["BlackLevel"].value == 4 * pa["BlackLevel"].value == 4 * 2056  # 14-bit levels, 16-bit samples
        assert pb["WhiteLevel"].value == 4 * pa["WhiteLevel"].value == 4 * 15000
        assert pb["Make"].value == "Canon" and pb["Model"].value == "Canon EOS Kiss X4"
        assert _same(pa["ExifTag"].value, pb["ExifTag"].value)
        assert {"ISOSpeedRatings", "ExposureTime", "FNumber", "FocalLength", "DateTimeOriginal"} <= set(pb["ExifTag"].value)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
@pytest.mark.parametrize("name", DNGS)
def test_every_tag_carried_exiftool(tmp_path, name):
    src = REAL / name
    out = _identity_dng(src, tmp_path / "out.dng")

    def read(p):
        res = subprocess.run(["exiftool", "-j", "-a", "-G1", "-n", "-u", "--System:all", "--File:all",
                              "--Composite:all", "--ExifTool:all", str(p)], capture_output=True, text=True, check=True)
        return {k: v for k, v in json.loads(res.stdout)[0].items() if k != "SourceFile"}
    ta, tb = read(src), read(out)
    k = SCALE[name]
    for key, value in ta.items():
        if key.split(":", 1)[1] in EXIFTOOL_STORAGE:
            continue
        assert key in tb, f"{key} of {name} dropped"
        if key.split(":", 1)[1] in LEVELS.values():  # numbers, or space-separated lists of them
            got = np.array(str(tb[key]).split(), np.float64)
            assert np.allclose(got, np.array(str(value).split(), np.float64) * k, rtol=1e-6), (key, tb[key], value)
            continue
        assert tb[key] == value, f"{key} of {name}: {value!r} -> {tb[key]!r}"
    assert set(tb) - set(ta) <= {"IFD0:ProcessingSoftware", "IFD0:WhiteLevel", "IFD0:RowsPerStrip",
                                 "IFD0:StripOffsets", "IFD0:StripByteCounts", "IFD0:PlanarConfiguration"}


@pytest.mark.parametrize("name", ["canon_550d_colorchart.dng", "pi_bggr_scene.dng"])
def test_stored_pixels_round_trip_bit_exact(tmp_path, name):
    """Unchanged pixels come back bit-exactly (×2^k, as the levels), masked border included: LibRaw unpacks
    the source's 10/14-bit strips, tifffile reads the output's 16-bit ones."""
    src = REAL / name
    out = _identity_dng(src, tmp_path / "out.dng")
    with rawpy.imread(str(src)) as raw:
        a = raw.raw_image.copy()
    b = tifffile.imread(out)
    assert a.shape == b.shape and b.dtype == np.uint16
    assert np.array_equal(a.astype(np.int64) * SCALE[name], b)


def test_denoised_values_land_in_raw_units(tmp_path):
    """New values: x·(white − black) + black in the output's 16-bit units, read back by LibRaw; ActiveArea
    still frames them, and a value between two 14-bit levels keeps its place (within 1/4 level)."""
    src = REAL / "canon_550d_colorchart.dng"
    r = camera_raw.read_raw(src)
    x = np.random.default_rng(0).random(r.mosaic.shape, dtype=np.float32)
    out = dng.write_denoised_dng(src, x, tmp_path / "out.dng")
    with rawpy.imread(str(out)) as raw:
        vis = raw.raw_image_visible.astype(np.float64)
        assert raw.black_level_per_channel == [4 * 2056] * 4 and raw.white_level == 4 * 15000  # 14 → 16 bits
    assert np.array_equal(vis, np.rint(x.astype(np.float64) * 4 * (15000 - 2056) + 4 * 2056))
    assert np.abs(camera_raw.read_raw(out).mosaic - x).max() <= 0.5 / (4 * (15000 - 2056)) + 1e-6


def test_orientation_kept_portrait(tmp_path):
    src = with_orientation(REAL / "canon_550d_colorchart.dng", tmp_path / "portrait.dng", 6)
    out = _identity_dng(src, tmp_path / "out.dng")
    with tifffile.TiffFile(out) as t:
        assert t.pages[0].tags["Orientation"].value == 6
    with rawpy.imread(str(src)) as a, rawpy.imread(str(out)) as b:
        ra = a.postprocess(use_camera_wb=True, output_bps=8, half_size=True)
        rb = b.postprocess(use_camera_wb=True, output_bps=8, half_size=True)
    assert ra.shape == rb.shape and ra.shape[0] > ra.shape[1]  # portrait in LibRaw's render
    assert np.array_equal(ra, rb)


def test_camera_raw_kdc_becomes_dng(tmp_path):
    """A Kodak KDC (not a DNG): read through LibRaw, written as a DNG built from what the file says."""
    src = REAL / "kodak_dc50.kdc"
    r = camera_raw.read_raw(src)
    assert r.cfa == "GRBG" and r.mosaic.shape == (512, 768)
    out = dng.write_denoised_dng(src, r.mosaic, tmp_path / "out.dng")
    with tifffile.TiffFile(out) as t:
        tags = t.pages[0].tags
        assert tags["Make"].value == "Eastman Kodak Company"
        assert tags["Model"].value == "Kodak Digital Science DC50 Zoom Camera"
        assert tags["Orientation"].value == 1 and bytes(tags["DNGVersion"].value) == bytes([1, 4, 0, 0])
        exif = tags["ExifTag"].value
        assert exif["ISOSpeedRatings"] == 84 and exif["DateTimeOriginal"] == "1997:04:23 08:00:47"
        assert abs(exif["FNumber"][0] / exif["FNumber"][1] - 6.2) < 1e-3
        assert abs(exif["ExposureTime"][0] / exif["ExposureTime"][1] - 0.00435) < 1e-5
    assert np.array_equal(camera_raw.read_raw(out).mosaic, r.mosaic)
    with rawpy.imread(str(src)) as a, rawpy.imread(str(out)) as b:  # LibRaw renders both alike
        ra = a.postprocess(use_camera_wb=True, output_bps=8).astype(np.float64)
        rb = b.postprocess(use_camera_wb=True, output_bps=8).astype(np.float64)
    assert ra.shape == rb.shape
    assert np.abs(ra - rb).mean() < 0.05  # LibRaw applies its own DC50 matrix to both (probe_rgb_cam)


@pytest.mark.parametrize("name, reason", [
    ("kodak_c330_not_bayer.raw", r"multi-plane raw"),
    # a 13.7-kB file declaring 3516×2328 pixels (0.013 bits each): what LibRaw returns for them is zeros or,
    # after other files in the same process, its buffer's leftovers; refused by size before either is read
    ("stub_no_pixels.dng", r"no pixel data \(13\.7 kB for 3516×2328 pixels"),
])
def test_not_bayer_or_broken_refused_by_cli(tmp_path, raw_ckpt, name, reason):
    res = cli("denoise", "--checkpoint", raw_ckpt, REAL / name, "--out", tmp_path / "o", expect=2)
    line = assert_one_line_error(res.stderr, name)
    assert re.search(reason, line), line
    assert not any((tmp_path / "o").glob("*"))
    with pytest.raises(InputError, match=reason):
        camera_raw.read_raw(REAL / name)


def test_too_small_for_its_pixels_refused_whatever_was_read_before(tmp_path):
    """The stub after real files (LibRaw's buffer then holds their pixels) and a real DNG cut short: both
    refused before decoding, by read_raw and by the DNG writer; every real raw holds ≥ 1.8 bits per pixel."""
    cut = tmp_path / "cut.dng"
    cut.write_bytes((REAL / "pi_bggr_scene.dng").read_bytes()[:16_000])  # header and tags whole, pixels gone
    for name in ("canon_550d_colorchart.dng", "pi_bggr_scene.dng", "kodak_dc50.kdc"):
        camera_raw.read_raw(REAL / name)
        for bad in (REAL / "stub_no_pixels.dng", cut):
            with pytest.raises(InputError, match=r"no pixel data \(\d+\.\d kB for \d+×\d+ pixels"):
                camera_raw.read_raw(bad)
    with pytest.raises(InputError, match=r"no pixel data \(16\.0 kB for 1456×1088 pixels"):
        dng.write_denoised_dng(cut, np.zeros((1088, 1456), np.float32), tmp_path / "o.dng")
    assert not (tmp_path / "o.dng").exists()


def test_cfa_self_check_on_real_files():
    """The phase check passes the real raws whose CFA tag is right and flags the Pi DNG tagged GBRG whose
    greens (the diagonal whose two sites' means agree, counted here from LibRaw's values alone) are the other."""
    from n2n_raw.method.cfa_check import cfa_phase_check
    for name in ("canon_550d_colorchart.dng", "pi_bggr_scene.dng", "kodak_dc50.kdc", "burst_lowlight/image_21.dng",
                 "pi_gbrg_no_blacklevel.dng"):
        with rawpy.imread(str(REAL / name)) as raw:
            v = raw.raw_image_visible.astype(np.float64)
            tagged = {divmod(k, 2) for k, c in enumerate(raw.raw_colors_visible[:2, :2].ravel()) if c in (1, 3)}
        mean = {(dy, dx): v[dy::2, dx::2].mean() for dy in (0, 1) for dx in (0, 1)}
        gap = {d: abs(mean[a] - mean[b]) / (mean[a] + mean[b]) for d, (a, b) in
               {"main": ((0, 0), (1, 1)), "anti": ((0, 1), (1, 0))}.items()}
        greens = {(0, 0), (1, 1)} if gap["main"] < gap["anti"] else {(0, 1), (1, 0)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the Pi file's missing black level
            r = camera_raw.read_raw(REAL / name)
        assert cfa_phase_check(r.mosaic, r.cfa, warn=False) == (greens == tagged), (name, gap, tagged)
        assert (greens == tagged) == (name != "pi_gbrg_no_blacklevel.dng"), (name, gap)


def test_unclipped_read_keeps_noise_below_black():
    """LibRaw's raw values minus black, over white minus black, with nothing clipped: the dark burst's mean."""
    src = REAL / "burst_lowlight" / "image_21.dng"
    r, c = camera_raw.read_raw(src, clip=False), camera_raw.read_raw(src)
    with rawpy.imread(str(src)) as raw:
        v = raw.raw_image_visible.astype(np.float64)
        black, white = raw.black_level_per_channel[0], raw.white_level
    assert np.allclose(r.mosaic, (v - black) / (white - black), atol=1e-6)
    assert r.mosaic.min() < 0 and c.mosaic.min() == 0
    assert c.mosaic.mean() > r.mosaic.mean()  # the clip's bias, which the unclipped read avoids


def test_missing_black_level_warns():
    with pytest.warns(UserWarning, match=r"pi_gbrg_no_blacklevel\.dng: the file states no black level, but its "
                                         r"darkest pixels are at \d+"):
        camera_raw.read_raw(REAL / "pi_gbrg_no_blacklevel.dng")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        camera_raw.read_raw(REAL / "pi_bggr_scene.dng")  # black 60 stated: no warning


def test_denoise_cli_on_real_files(tmp_path, raw_ckpt):
    """The whole command on a real DNG and a KDC: DNG + preview out, same visible size, same tags."""
    out = tmp_path / "o"
    res = cli("denoise", "--checkpoint", raw_ckpt, REAL / "pi_bggr_scene.dng", REAL / "kodak_dc50.kdc",
              "--out", out)
    assert "pi_bggr_scene.dng" in res.stdout and "kodak_dc50.kdc" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["kodak_dc50.dng", "kodak_dc50.png", "pi_bggr_scene.dng",
                                                    "pi_bggr_scene.png"]
    for name, shape in [("pi_bggr_scene", (1088, 1456)), ("kodak_dc50", (512, 768))]:
        assert camera_raw.read_raw(out / f"{name}.dng").mosaic.shape == shape


def test_find_raws_takes_camera_formats(tmp_path):
    (tmp_path / "a").mkdir()
    for n in ["x.DNG", "y.nef", "z.CR3", "a/w.kdc", "notes.txt", "pic.jpg"]:
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in camera_raw.find_raws(tmp_path)] == ["w.kdc", "x.DNG", "y.nef", "z.CR3"]
    (tmp_path / "a" / "sub").mkdir()
    with pytest.raises(InputError, match="no camera raw files found"):
        camera_raw.find_raws(tmp_path / "a" / "sub")
