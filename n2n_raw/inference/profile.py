"""A photo's noise profile from its file: the DNG NoiseProfile tag where present, else the blind estimate
(:mod:`n2n_raw.method.noise_profile` holds the profile and the estimator), and what ``n2n-raw info`` prints.

- :func:`profile_from_dng`: the DNG NoiseProfile tag (51041, DNG 1.3+), None where the file has none.
- :func:`photo_profile`: the tag where present, else the estimate.
- :func:`describe_photo`: what ``n2n-raw info PHOTO`` prints.
- :func:`optical_black_lines`, :func:`black_offset_note`: the masked pixels' black, and whether it disagrees
  with the file's.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from n2n_raw.cfa import CFAS
from n2n_raw.errors import InputError
from n2n_raw.io import tiff
from n2n_raw.io.camera_raw import OpticalBlack, _check_file, optical_black, read_raw
from n2n_raw.io.dng import _raw_ifd
from n2n_raw.method.noise_profile import MAX_REL_SE_A, NoiseProfile, _estimate, estimate_profile, from_tag_values

#: Tags read here: NoiseProfile, CFARepeatPatternDim, CFAPattern, CFAPlaneColor, ActiveArea.
NOISE_PROFILE_TAG = 51041
_CFA_DIM, _CFA_PATTERN, _CFA_PLANE_COLOR, _ACTIVE_AREA = 33421, 33422, 50710, 50829


def _tag_cfa(node, bo: str) -> str | None:
    """The 2×2 pattern of the visible mosaic (what :func:`~n2n_raw.io.camera_raw.read_raw` reads) from a raw
    IFD's CFA tags; None when they do not give a 2×2 Bayer pattern.

    DNG anchors CFAPattern at ActiveArea's top-left; LibRaw starts its visible area there, or one row (column)
    further where that corner's row (column) is odd, so the visible pattern is CFAPattern shifted by the
    corner's parity (tests: against LibRaw on copies with odd ActiveArea corners)."""
    dim = node.value(_CFA_DIM, bo)
    codes = node.value(_CFA_PATTERN, bo)
    if dim is None or codes is None or tuple(dim) != (2, 2) or not isinstance(codes, tuple) or len(codes) != 4:
        return None
    planes = node.value(_CFA_PLANE_COLOR, bo, (0, 1, 2))
    planes = planes if isinstance(planes, tuple) else (planes,)
    try:
        cells = ["RGB"[int(planes[int(c)]) if len(planes) > int(c) else int(c)] for c in codes]
    except (IndexError, ValueError):
        return None
    area = node.value(_ACTIVE_AREA, bo)
    dy, dx = (int(area[0]) % 2, int(area[1]) % 2) if isinstance(area, tuple) and len(area) == 4 else (0, 0)
    cfa = "".join(cells[((y + dy) % 2) * 2 + (x + dx) % 2] for y in (0, 1) for x in (0, 1))
    return cfa if cfa in CFAS else None


def profile_from_dng(path: str | os.PathLike) -> NoiseProfile | None:
    """The noise profile a DNG states in its NoiseProfile tag (51041, DNG 1.3+), or None when it has none.

    DNG defines σ²(x) = S·x + O with x "normalised": the linear raw value with BlackLevel subtracted and divided
    by WhiteLevel − BlackLevel, the same units as ``read_raw(path, clip=False).mosaic`` (not raw units, not
    x/(2^bits − 1)); so a = S and b = O. Where LibRaw's black level differs from the file's BlackLevel tags
    (e.g. one it measured on masked pixels) the units differ by that much. The tag is looked up in the raw
    image's directory, then in IFD0; one pair applies to every position, one pair per CFA plane (CFAPlaneColor
    order, R, G, B by default) is mapped to the 2×2 positions with the file's CFAPattern.

    Args:
        path: a DNG, or any TIFF-based raw (none states the tag but DNGs); other files give None.
    Returns:
        :class:`NoiseProfile` with ``source="dng-tag"``, or None.
    Raises:
        InputError: missing or unreadable file; a NoiseProfile tag that is malformed (see
            :func:`from_tag_values`) or per plane without a 2×2 CFAPattern.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as f:
            bo, chain = tiff.read_tiff(f.read())
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except (tiff.TiffError, struct.error, ValueError, IndexError):
        return None  # not a TIFF-based file: no DNG tags
    raw = _raw_ifd(chain, bo)
    for node in [n for n in (raw, chain[0]) if n is not None]:
        entry = node.entries.get(NOISE_PROFILE_TAG)
        if entry is None:
            continue
        values = entry.values(bo)
        cfa_node = raw if raw is not None else node
        cfa = _tag_cfa(cfa_node, bo)
        planes = cfa_node.value(_CFA_PLANE_COLOR, bo, (0, 1, 2))
        planes = planes if isinstance(planes, tuple) else (planes,)
        if cfa is None and len(values) != 2:
            raise InputError(f"{path}: NoiseProfile gives one pair per colour plane but the file has no 2×2 "
                             f"Bayer CFAPattern to place them")
        return from_tag_values(values, cfa or "RGGB", planes, where=str(path))
    return None


def photo_profile(path: str | os.PathLike) -> NoiseProfile:
    """The noise profile of a raw photo: its DNG NoiseProfile tag when it has one (:func:`profile_from_dng`),
    else :func:`estimate_profile` of ``read_raw(path, clip=False).mosaic``.

    Raises:
        InputError: what :func:`~n2n_raw.io.camera_raw.read_raw` refuses, a malformed tag, a photo too small or
            too saturated to estimate.
    """
    tagged = profile_from_dng(path)
    if tagged is not None:
        return tagged
    return estimate_profile(read_raw(path, clip=False).mosaic)


# ------------------------------------------------------------------------------------------------ describe

def _position_names(cfa: str) -> list[str]:
    """Colour names of the 2×2 positions: R, B, and the greens as Gr (in R's row) and Gb (in B's row)."""
    names = []
    for k, c in enumerate(cfa):
        if c == "G":
            row = cfa[2 * (k // 2):2 * (k // 2) + 2]
            c = "Gr" if "R" in row else "Gb"
        names.append(c)
    return names


def _profile_lines(profile: NoiseProfile, cfa: str, black, white: float, label: str) -> list[str]:
    lines = []
    for k, name in enumerate(_position_names(cfa)):
        span = white - black[k]
        s10, s50 = profile.std_at(0.1)[k], profile.std_at(0.5)[k]
        lines.append(f"  {name:<2} ({k // 2},{k % 2})  a={profile.a[k]:.2e}  b={profile.b[k]:.2e}  "
                     f"σ(10%)={s10:.2e} ({s10 * span:.3g} DN)  σ(50%)={s50:.2e} ({s50 * span:.3g} DN)  ({label})")
    return lines


#: Smallest disagreement (raw units) between the optical black and the file's black levels that ``info`` reports:
#: 3 DN between the row parities of a 14-bit Canon frame showed as a grid once denoised (benchmarks/RESULTS.md).
BLACK_MISMATCH = 1.0


def black_offset_note(ob: OpticalBlack) -> str | None:
    """A note when the masked pixels' offsets between positions disagree with the file's black levels by more
    than :data:`BLACK_MISMATCH` and 10 standard errors, with the corrected levels; else None."""
    names = _position_names(ob.cfa)
    ob_mean, file_mean = sum(ob.mean) / 4, sum(ob.stated) / 4
    mismatch = [(m - ob_mean) - (b - file_mean) for m, b in zip(ob.mean, ob.stated)]
    spread = max(mismatch) - min(mismatch)
    if spread < max(BLACK_MISMATCH, 10 * ob.standard_error()):
        return None
    fix = ", ".join(f"{n} {b + d:.1f}" for n, b, d in zip(names, ob.stated, mismatch))
    return (f"note: the masked pixels' black differs between positions by {spread:.1f} raw units more than the "
            f"file's black levels say; the noise hides that offset, a denoised photo shows it as a fine grid in its "
            f"darkest areas. The file's black levels shifted by the measured offsets: {fix} (in darktable: raw "
            f"black/white point)")


def optical_black_lines(path: str | os.PathLike) -> list[str]:
    """What ``info`` says of the masked pixels, where the file keeps them (:func:`optical_black`): their black
    per position, and :func:`black_offset_note` where there is one."""
    ob = optical_black(path)
    if ob is None:
        return []
    lines = [f"optical black ({ob.where} of the image, {ob.count:,} masked pixels per position): "
             + ", ".join(f"{n} {m:.1f}" for n, m in zip(_position_names(ob.cfa), ob.mean))
             + f" (σ {min(ob.std):.1f}-{max(ob.std):.1f})"]
    note = black_offset_note(ob)
    return lines + ([note] if note else [])


def describe_photo(path: str | os.PathLike) -> str:
    """What ``n2n-raw info PHOTO`` prints: the photo's size, CFA, levels and bit depth, and its noise profile
    per 2×2 position (colour, a, b, and the noise σ at 10 % and 50 % of white in mosaic units and raw DN),
    from the DNG tag when present (with the blind estimate beside it) else estimated, with a note where the
    estimate could not separate shot from read noise; and where the file keeps its masked borders, their black
    per position, with a note where it disagrees with the file's black levels.

    Raises:
        InputError: as :func:`photo_profile`.
    """
    path = Path(path)
    photo = read_raw(path, clip=False)
    h, w = photo.mosaic.shape
    black = photo.black_level
    levels = " ".join(f"{v:g}" for v in black) if len(set(black)) > 1 else f"{black[0]:g}"
    lines = [f"photo {path}: {w}×{h} mosaic, CFA {photo.cfa}, black {levels}, white {photo.white_level:g}, "
             f"{photo.bits} bits",
             "noise profile per 2×2 position: variance a·x + b at level x = (raw − black)/(white − black); "
             "σ(10%), σ(50%): the noise std at 10% and 50% of white, in those units (raw DN)"]
    tagged = profile_from_dng(path)
    estimated, fits = _estimate(photo.mosaic)
    if tagged is not None:
        lines += _profile_lines(tagged, photo.cfa, black, photo.white_level, "DNG NoiseProfile tag")
        lines.append("estimated from the photo, for comparison:")
    lines += _profile_lines(estimated, photo.cfa, black, photo.white_level, "estimated")
    lines += optical_black_lines(path)
    flat = [k for k, f in enumerate(fits) if not f.identifiable and f.b > 0]
    if flat:
        lo, hi = min(fits[k].level_lo for k in flat), max(fits[k].level_hi for k in flat)
        lines.append(f"note: the photo does not determine the shot term at "
                     f"{', '.join(_position_names(photo.cfa)[k] for k in flat)} (its smooth areas lie at levels "
                     f"{lo:.3g}–{hi:.3g}; the fitted a was ≤ 0 or its standard error above {MAX_REL_SE_A:.0%} of it): there a = 0 "
                     f"and b is the noise variance at those levels, valid near them only")
    return "\n".join(lines)
