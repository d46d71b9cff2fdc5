"""The masked (optically black) pixels a raw file keeps beside its image: their black per 2×2 position, and
``n2n-raw info``'s note where they disagree with the file's black levels (the grid in a denoised Canon frame's
darkest areas; benchmarks/RESULTS.md)."""
from __future__ import annotations

import numpy as np
import pytest
import rawpy
from conftest import cli
from realdata import real_file

from n2n_raw.inference.profile import optical_black_lines
from n2n_raw.io.camera_raw import optical_black, read_raw


def test_canon_optical_black_by_hand():
    """Against the stored raw sliced here: the 152 masked columns left of the image, in the image's rows
    (ActiveArea 26 152 1182 1886: an even offset, so the left strip's (0, 0) is the visible mosaic's)."""
    path = real_file("canon_550d_colorchart.dng")
    ob = optical_black(path)
    with rawpy.imread(str(path)) as raw:
        strip = raw.raw_image[26:26 + 1156, 0:152].astype(np.float64)
    want = [strip[dy::2, dx::2].mean() for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))]
    assert ob is not None and ob.where == "left" and ob.cfa == "RGGB"
    assert ob.mean == pytest.approx(want, abs=1e-9)
    assert ob.count == 578 * 76 and ob.stated == (2056.0,) * 4
    assert 15 < min(ob.std) < max(ob.std) < 20  # the read noise of a 14-bit Canon: a noise level, not data
    # The odd rows (Gb, B) sit ≈ 3 DN above the even rows (R, Gr): an offset between the row parities.
    assert 2.5 < (ob.mean[2] + ob.mean[3] - ob.mean[0] - ob.mean[1]) / 2 < 3.5
    assert abs(ob.mean[1] - ob.mean[0]) < 0.5 and abs(ob.mean[3] - ob.mean[2]) < 0.5


def test_the_image_itself_shows_the_same_offset():
    """An independent witness: in the visible image's darkest tenth (16×16 blocks), Gb sits above Gr by about
    what the masked pixels say, far more than the blocks' noise allows."""
    path = real_file("canon_550d_colorchart.dng")
    r = read_raw(path, clip=False)
    scale = r.white_level - r.black_level[0]
    gr, gb = (r.mosaic[dy::2, dx::2][:576, :864].reshape(36, 16, 54, 16).mean(axis=(1, 3)) * scale
              for dy, dx in ((0, 1), (1, 0)))
    dark = (gr + gb) / 2 <= np.quantile((gr + gb) / 2, 0.1)
    ob = optical_black(path)
    assert np.mean(gb[dark] - gr[dark]) == pytest.approx(ob.mean[2] - ob.mean[1], abs=1.0)


def test_files_without_masked_borders_have_none():
    assert optical_black(real_file("pi_bggr_scene.dng")) is None
    assert optical_black(real_file("kodak_dc50.kdc")) is None
    assert optical_black_lines(real_file("pi_bggr_scene.dng")) == []


def test_info_reports_the_optical_black_and_the_fix():
    out = cli("info", real_file("canon_550d_colorchart.dng")).stdout
    assert "optical black (left of the image, 43,928 masked pixels per position): R 2047.3, Gr 2047.5, " \
           "Gb 2050.4, B 2050.3" in out
    note = next(line for line in out.splitlines() if line.startswith("note: the masked pixels' black"))
    assert "by 3.1 raw units" in note and "R 2054.4, Gr 2054.6, Gb 2057.5, B 2057.4" in note
    assert "optical black" not in cli("info", real_file("pi_bggr_scene.dng")).stdout


def test_a_file_that_is_not_bayer_is_refused_in_one_line():
    from n2n_raw.errors import InputError
    with pytest.raises(InputError, match="not a Bayer mosaic"):
        optical_black(real_file("kodak_c330_not_bayer.raw"))
