"""n2n_raw.method.noise_profile: var = a·x + b per 2×2 position, from the DNG NoiseProfile tag or estimated blind.

The blind estimate is checked against noise of known (a, b) drawn on synthetic mosaics, and against a real
8-frame burst whose per-pixel variance across frames measures the true noise independently. The tag is read
from a copy of a real DNG that carries it, and checked against exiftool (no code shared with n2n-raw).
"""
from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from n2n_raw.method import noise_profile as npf
from n2n_raw.method.bayer import pack
from n2n_raw.errors import InputError
from n2n_raw.inference import profile as photo_files
from n2n_raw.inference.profile import photo_profile, profile_from_dng
from n2n_raw.method.noise_profile import NoiseProfile, estimate_profile

from conftest import assert_one_line_error, cli
from realdata import REAL_RAW, needs_real_raw, real_file, real_missing

BURST = REAL_RAW / "burst_lowlight"
needs_real = needs_real_raw


# ------------------------------------------------------------------------------------------------ the type

def test_variance_per_position_and_floor():
    p = NoiseProfile(a=(1e-3, 2e-3, 3e-3, 4e-3), b=(1e-5, 2e-5, 3e-5, 0.0), source="estimated")
    x = np.full((4, 6), 0.5, np.float32)
    x[1, 1] = -0.01  # below black: shot term 0, read term only; b = 0 there gives the floor
    var = p.variance(x)
    assert var.dtype == np.float32 and var.shape == (4, 6)
    packed = pack(var)
    for k in range(4):
        want = np.float32(p.a[k] * 0.5 + p.b[k])
        assert np.allclose(np.delete(packed[k].ravel(), 0) if k == 3 else packed[k], want)
    assert var[1, 1] == np.float32(npf.VARIANCE_FLOOR)
    assert np.allclose(p.std_at(0.5), np.sqrt(np.array(p.a) * 0.5 + np.array(p.b)))
    with pytest.raises(ValueError):
        p.variance(np.zeros((3, 4)))
    with pytest.raises(Exception):
        p.a = (0, 0, 0, 0)  # frozen


# ------------------------------------------------------------------------------------------------ synthetic

def _clean_mosaic(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth but varied: a dead-leaves scene drawn coarser than the pixel grid (sidd_synth.scene), RGGB."""
    from n2n_raw.sim.sidd_world import mosaic, scene
    return mosaic(scene(rng, h, w), "RGGB").astype(np.float64)


def _poisson_gaussian(rng: np.random.Generator, clean: np.ndarray, a, b) -> np.ndarray:
    """a·Poisson(clean/a) + N(0, b) with (a, b) per 2×2 position: mean clean, variance a·clean + b."""
    h, w = clean.shape
    cells = clean.reshape(h // 2, 2, w // 2, 2)
    a4, b4 = np.reshape(a, (1, 2, 1, 2)), np.reshape(b, (1, 2, 1, 2))
    noisy = a4 * rng.poisson(cells / a4) + np.sqrt(b4) * rng.standard_normal(cells.shape)
    return noisy.reshape(h, w).astype(np.float32)


LEVELS = [  # (a, b) per position, different at each; shot noise from 1e-4 to 1e-2, read from 1e-6 to 1e-4
    ((1e-4, 2e-4, 1.5e-4, 0.7e-4), (1e-6, 3e-6, 2e-6, 1.5e-6)),
    ((1e-3, 2e-3, 1.5e-3, 0.7e-3), (1e-5, 3e-5, 2e-5, 1.5e-5)),
    ((1e-2, 0.7e-2, 1.5e-2, 0.5e-2), (1e-4, 0.5e-4, 0.8e-4, 0.3e-4)),
]


@pytest.mark.parametrize("level", range(len(LEVELS)))
def test_estimate_recovers_known_noise(level):
    """Within 15 % of a and of the variance at mid-grey, each position (over seeds 0-5 the worst seen: 11 % of
    a, 9 % of the variance, at a = 1e-2 where the darkest levels hold few photo-electrons)."""
    a, b = LEVELS[level]
    rng = np.random.default_rng(level)
    noisy = _poisson_gaussian(rng, _clean_mosaic(rng, 250, 362), a, b)
    p = estimate_profile(noisy)
    assert p.source == "estimated" and len(p.a) == len(p.b) == 4
    assert all(v >= 0 for v in p.a + p.b)
    a_true, b_true = np.array(a), np.array(b)
    assert np.all(np.abs(np.array(p.a) / a_true - 1) < 0.15), (p.a, a)
    mid = (np.array(p.a) * 0.5 + np.array(p.b)) / (a_true * 0.5 + b_true)
    assert np.all(np.abs(mid - 1) < 0.15), mid


def test_shared_estimate_on_a_small_dark_crop():
    """One (a, b) for the four positions from all their blocks: on a 128×128 crop of a dark scene, where
    per-position fits are left with a few dozen blocks each, the shared a and the variance at the crop's own
    mean level come within 20 % (a = 1e-3 at every position, as on a Bayer sensor)."""
    a, b = 1e-3, 1e-5
    errs = []
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        clean = 0.1 * _clean_mosaic(rng, 128, 128)
        p = estimate_profile(_poisson_gaussian(rng, clean, (a,) * 4, (b,) * 4), shared=True)
        assert len(set(p.a)) == 1 and len(set(p.b)) == 1
        m = float(clean.mean())
        errs += [p.a[0] / a - 1, (p.a[0] * m + p.b[0]) / (a * m + b) - 1]
    assert np.max(np.abs(errs)) < 0.2, errs


def test_flat_dark_scene_falls_back_to_pooled_variance():
    """One level everywhere (as a dark frame): a is not determined, so a = 0 and b = the variance there."""
    rng = np.random.default_rng(7)
    level, var = 0.0066, 9e-5 * 0.0066 + 3e-7
    x = (level + np.sqrt(var) * rng.standard_normal((400, 600))).astype(np.float32)
    p, fits = npf._estimate(x)
    assert p.a == (0.0, 0.0, 0.0, 0.0)
    assert not any(f.identifiable for f in fits)
    assert np.allclose(p.b, var, rtol=0.05), (p.b, var)


def test_estimate_edge_cases():
    zero = estimate_profile(np.zeros((200, 200), np.float32))  # noise-free
    assert zero.a == zero.b == (0.0, 0.0, 0.0, 0.0)
    assert np.all(zero.variance(np.zeros((2, 2))) > 0)
    for bad in (np.zeros((40, 40)), np.zeros((41, 80)), np.zeros((4, 4, 3)), np.full((200, 200), np.nan)):
        with pytest.raises(InputError):
            estimate_profile(bad)
    saturated = np.ones((200, 200), np.float32)
    with pytest.raises(InputError, match="saturated"):
        estimate_profile(saturated)


def test_constants_match_their_definitions():
    """BLOCK_SPREAD (exact) against simulation; TRUNCATION against its calibration on fresh noise."""
    rng = np.random.default_rng(3)
    _, v, _ = npf._blocks(0.5 + 0.01 * rng.standard_normal((1024, 1024)))
    assert abs(v.std() / v.mean() / npf.BLOCK_SPREAD - 1) < 0.05
    assert abs(v.mean() / 1e-4 - 1) < 0.01  # the high-pass gain is right: noise variance 1e-4 comes back
    assert abs(npf._calibrate(seed=5, size=1024) / npf.TRUNCATION - 1) < 0.005


def test_estimate_is_fast():
    """Under 1 s for a 1.6-Mpixel mosaic (measured 0.06-0.12 s on one core)."""
    import time
    x = np.random.default_rng(0).normal(0.2, 0.01, (1088, 1456)).astype(np.float32)
    t = time.perf_counter()
    estimate_profile(x)
    assert time.perf_counter() - t < 1.0


# ------------------------------------------------------------------------------------------------ real burst

@pytest.fixture(scope="module")
def burst() -> np.ndarray:
    if not BURST.is_dir():
        pytest.skip(real_missing("burst_lowlight/ (the 8-frame burst)"))
    from n2n_raw.io.camera_raw import read_raw
    return np.stack([read_raw(f, clip=False).mosaic for f in sorted(BURST.glob("*.dng"))])


def test_estimate_predicts_burst_temporal_variance(burst):
    """One frame's blind estimate against the variance across the 8 frames of a static scene (unbiased, per
    pixel): the mean predicted variance per position within 8 % (measured +1 to +3 % for each of the 8
    frames; the spatial estimate also counts fixed-pattern noise, which the temporal variance does not)."""
    assert burst.shape[0] == 8
    temporal = pack(burst.astype(np.float64).var(axis=0, ddof=1)).mean(axis=(1, 2))
    frame = burst[0]
    p = estimate_profile(frame)
    predicted = pack(p.variance(frame)).mean(axis=(1, 2))
    assert np.all(np.abs(predicted / temporal - 1) < 0.08), predicted / temporal
    # The slope too: across the scene's levels, the profile at the burst mean follows the temporal variance.
    mean = burst.astype(np.float64).mean(axis=0)
    var_t = burst.astype(np.float64).var(axis=0, ddof=1)
    pm, pv, pp = pack(mean), pack(var_t), pack(p.variance(mean.astype(np.float32)))
    for k in range(4):  # measured within 9 % in every bin
        edges = np.quantile(pm[k], [0.0, 0.2, 0.4, 0.6, 0.8, 0.95])
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (pm[k] >= lo) & (pm[k] < hi)
            assert abs(pp[k][sel].mean() / pv[k][sel].mean() - 1) < 0.15, (k, lo, hi)


# ------------------------------------------------------------------------------------------------ DNG tag

def _with_tags(src: Path, out: Path, tags: dict) -> Path:
    """A copy of a single-strip DNG with extra IFD0 entries {tag: (type, values)} (the repo's TIFF writer)."""
    from n2n_raw.io import tiff
    buf = src.read_bytes()
    bo, chain = tiff.read_tiff(buf)
    node = chain[0]
    (offset,), (count,) = node.entries[273].values(bo), node.entries[279].values(bo)
    for tag, (typ, values) in tags.items():
        node.entries[tag] = tiff.entry(tag, typ, values, bo)
    out.write_bytes(tiff.write_tiff(node, buf[offset:offset + count], bo))
    return out


# One (S, O) per CFAPlaneColor plane (R, G, B), chosen distinct so that the mapping shows.
PAIRS = [2.1e-4, 3.0e-6, 1.7e-4, 2.0e-6, 2.9e-4, 4.0e-6]


@pytest.fixture()
def tagged(tmp_path) -> Path:
    return _with_tags(real_file("pi_bggr_scene.dng"), tmp_path / "tagged.dng", {photo_files.NOISE_PROFILE_TAG: (12, PAIRS)})


@needs_real
@pytest.mark.parametrize("name", ["canon_550d_colorchart.dng", "pi_bggr_scene.dng", "pi_gbrg_no_blacklevel.dng",
                                  "burst_lowlight/image_21.dng", "kodak_dc50.kdc"])
def test_shared_files_carry_no_tag_and_cfa_from_tags_matches_libraw(name):
    from n2n_raw.io import tiff
    from n2n_raw.io.camera_raw import read_raw
    from n2n_raw.io.dng import _raw_ifd
    path = REAL_RAW / name
    assert profile_from_dng(path) is None
    if path.suffix == ".dng":
        bo, chain = tiff.read_tiff(path.read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the file without a black level warns
            assert photo_files._tag_cfa(_raw_ifd(chain, bo), bo) == read_raw(path).cfa


@needs_real
@pytest.mark.parametrize("area, cfa", [((1, 1, 1088, 1456), "RGGB"), ((0, 1, 1088, 1456), "GBRG")])
def test_cfa_from_tags_follows_an_odd_active_area(tmp_path, area, cfa):
    """DNG anchors CFAPattern at ActiveArea's top-left; LibRaw starts its visible area one row (column) further
    when that is odd: BGGR with ActiveArea at (1, 1) reads as RGGB, at (0, 1) as GBRG."""
    from n2n_raw.io import tiff
    from n2n_raw.io.camera_raw import read_raw
    out = _with_tags(REAL_RAW / "pi_bggr_scene.dng", tmp_path / "shifted.dng",
                     {50829: (4, list(area)), photo_files.NOISE_PROFILE_TAG: (12, PAIRS)})
    bo, chain = tiff.read_tiff(out.read_bytes())
    assert photo_files._tag_cfa(chain[0], bo) == read_raw(out).cfa == cfa
    p = profile_from_dng(out)
    pair = {"R": PAIRS[0], "G": PAIRS[2], "B": PAIRS[4]}
    assert p.a == tuple(pair[c] for c in cfa)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed (Debian: libimage-exiftool-perl)")
def test_tag_read_as_exiftool_reads_it(tagged):
    res = subprocess.run(["exiftool", "-n", "-s3", "-NoiseProfile", str(tagged)], capture_output=True, text=True,
                         check=True)
    from_exiftool = [float(v) for v in res.stdout.split()]
    assert from_exiftool == PAIRS
    p = profile_from_dng(tagged)
    # BGGR: (0,0) B, (0,1) G, (1,0) G, (1,1) R; the pairs are R, G, B (CFAPlaneColor's default order).
    r, g, b = [from_exiftool[i:i + 2] for i in (0, 2, 4)]
    assert p == NoiseProfile(a=(b[0], g[0], g[0], r[0]), b=(b[1], g[1], g[1], r[1]), source="dng-tag")


def test_photo_profile_prefers_the_tag(tagged):
    from n2n_raw.io.camera_raw import read_raw
    assert np.array_equal(read_raw(tagged, clip=False).mosaic,
                          read_raw(REAL_RAW / "pi_bggr_scene.dng", clip=False).mosaic)  # same pixels, still a DNG
    assert photo_profile(tagged) == profile_from_dng(tagged)
    assert photo_profile(tagged).source == "dng-tag"
    estimated = photo_profile(REAL_RAW / "pi_bggr_scene.dng")
    assert estimated.source == "estimated" and all(1e-5 < a < 1e-3 for a in estimated.a)


@needs_real
def test_one_pair_and_malformed_tags(tmp_path):
    src = REAL_RAW / "pi_bggr_scene.dng"
    one = _with_tags(src, tmp_path / "one.dng", {photo_files.NOISE_PROFILE_TAG: (12, [3e-4, 5e-6])})
    assert profile_from_dng(one) == NoiseProfile((3e-4,) * 4, (5e-6,) * 4, "dng-tag")
    for name, values in [("five", [1e-4, 0, 1e-4, 0, 1e-4]), ("negative", [-1e-4, 1e-6]), ("nan", [np.nan, 0.0])]:
        bad = _with_tags(src, tmp_path / f"{name}.dng", {photo_files.NOISE_PROFILE_TAG: (12, values)})
        with pytest.raises(InputError, match="NoiseProfile"):
            profile_from_dng(bad)
    with pytest.raises(InputError, match="no such file"):
        profile_from_dng(tmp_path / "missing.dng")
    assert profile_from_dng(REAL_RAW / "sidd_0001_METADATA_RAW_010.MAT") is None  # not a TIFF: no tag


def test_from_tag_values_plane_order():
    p = npf.from_tag_values([1e-4, 1e-6, 2e-4, 2e-6, 3e-4, 3e-6], "GRBG", plane_colors=(2, 1, 0))  # planes B, G, R
    assert p.a == (2e-4, 3e-4, 1e-4, 2e-4) and p.b == (2e-6, 3e-6, 1e-6, 2e-6)
    with pytest.raises(InputError):
        npf.from_tag_values([1e-4, 0, 1e-4, 0], "RGGB")


@needs_real
def test_sidd_metadata_noise_profile_is_sane():
    """The real SIDD METADATA file carries NoiseProfile (tag 51041 in imfinfo's UnknownTags; SiddMeta does not
    expose it, so it is dug out here): S₁..₃ = 4.79e-4, O = 0 for ISO 100, [0, 1] of a 10-bit white."""
    from n2n_raw.io.sidd._mat import _loadmat
    from n2n_raw.io.sidd.metadata import _field, _numbers, _scalar, _structs, _unwrap, read_metadata
    path = REAL_RAW / "sidd_0001_METADATA_RAW_010.MAT"
    meta = read_metadata(path)
    md = _unwrap(_loadmat(path, variable_names=["metadata"])["metadata"])
    values = [_numbers(_field(e, "Value")) for e in _structs(_field(md, "UnknownTags"))
              if _scalar(_field(e, "ID")) == photo_files.NOISE_PROFILE_TAG]
    assert len(values) == 1 and values[0].size == 6
    planes = tuple(int(c) for c in _numbers(_field(md, "CFAPlaneColor")))
    p = npf.from_tag_values(values[0], meta.cfa, planes, where=str(path))
    assert p.source == "dng-tag" and meta.cfa == "GRBG" and meta.iso == 100
    assert all(1e-5 < a < 1e-2 for a in p.a) and all(b >= 0 for b in p.b)
    assert np.allclose(p.a, 4.7946e-4, rtol=1e-3)
    # σ at mid-grey about 1.6 % of white: plausible for a phone sensor at ISO 100.
    assert 0.005 < p.std_at(0.5)[0] < 0.05


# ------------------------------------------------------------------------------------------------ n2n-raw info

@needs_real
def test_info_prints_a_photos_profile():
    r = cli("info", REAL_RAW / "pi_bggr_scene.dng")
    out = r.stdout
    assert "1456×1088 mosaic, CFA BGGR, black 60, white 1023, 10 bits" in out
    rows = [ln for ln in out.splitlines() if "a=" in ln]
    assert [ln.split()[0] for ln in rows] == ["B", "Gb", "Gr", "R"]
    assert all("(estimated)" in ln and "σ(10%)=" in ln and "σ(50%)=" in ln and "DN)" in ln for ln in rows)


def test_info_on_a_tagged_photo_shows_the_tag(tagged):
    out = cli("info", tagged).stdout
    assert out.count("(DNG NoiseProfile tag)") == 4 and out.count("(estimated)") == 4
    assert "a=2.90e-04  b=4.00e-06" in out  # B at (0,0)


def test_info_missing_photo_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "nothere.dng"
    r = cli("info", missing, expect=2)
    assert_one_line_error(r.stderr, missing)
