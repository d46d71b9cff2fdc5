"""SIDD phones, CFAs and scene names: the phone → CFA table, the 40-scene table of the block files."""
from __future__ import annotations

import re
from pathlib import Path

from n2n_raw.cfa import CFAS, check_cfa  # the one definition of the patterns (re-exported here)
from n2n_raw.errors import InputError

__all__ = ["CFAS", "check_cfa", "PHONE_CFA", "MAKE_TO_PHONE", "BLOCK_SCENES", "BLOCK_VARIABLES",
           "phone_from_make", "parse_scene_name", "block_cfas"]

#: CFA pattern of each SIDD phone in MATLAB orientation (row-major 2×2 cell).
PHONE_CFA = {"GP": "BGGR", "IP": "RGGB", "S6": "GRBG", "N6": "BGGR", "G4": "BGGR"}

#: DNG ``Make`` → SIDD phone code. Match with :func:`phone_from_make` (case-insensitive, stripped).
MAKE_TO_PHONE = {"Apple": "IP", "Google": "GP", "samsung": "S6", "motorola": "N6", "LGE": "G4"}
_MAKE_TO_PHONE_FOLDED = {k.casefold(): v for k, v in MAKE_TO_PHONE.items()}

#: The 40 scenes of the validation / benchmark block files, in image-index order.
BLOCK_SCENES = (
    "0009_001_S6_00800_00350_3200_L", "0021_001_GP_10000_05000_5500_N", "0024_001_N6_03200_01500_5500_N",
    "0026_001_G4_00400_00160_5500_L", "0031_001_IP_01600_02000_3200_N", "0037_002_GP_06400_03200_3200_L",
    "0041_002_IP_01600_04000_5500_L", "0046_002_G4_00400_00350_3200_L", "0049_002_N6_00800_00800_5500_L",
    "0053_002_S6_03200_02000_5500_N", "0056_003_N6_03200_04000_5500_N", "0058_003_G4_00400_00500_5500_L",
    "0061_003_S6_00800_00500_4400_L", "0067_003_GP_01600_01500_3200_L", "0071_003_IP_02000_04000_5500_L",
    "0074_004_N6_00400_00040_3200_L", "0079_004_G4_00800_00160_3200_N", "0082_004_S6_03200_00500_4400_L",
    "0085_004_GP_06400_02000_4400_N", "0093_004_IP_01250_00250_3200_L", "0095_005_N6_00400_00200_3200_L",
    "0100_005_G4_00800_00400_3200_N", "0103_005_S6_01600_00800_4400_L", "0109_005_GP_10000_08000_4400_N",
    "0112_005_IP_01000_07500_5500_L", "0119_006_N6_00400_00100_3200_L", "0124_006_G4_00800_00350_3200_N",
    "0128_006_S6_03200_01600_4400_L", "0131_006_GP_01600_01250_4400_N", "0141_006_IP_01600_01620_3200_L",
    "0143_007_N6_00800_00800_4400_N", "0148_007_G4_00400_00400_4400_L", "0153_007_S6_03200_03200_5500_L",
    "0158_007_GP_03200_03200_5500_N", "0162_007_IP_01600_01600_3200_L", "0171_008_N6_03200_01600_4400_L",
    "0174_008_G4_00800_00800_4400_N", "0176_008_S6_00400_00100_5500_L", "0183_008_GP_06400_06400_5500_N",
    "0187_008_IP_01600_01600_3200_L",
)

#: Variable names of the SIDD raw block files.
BLOCK_VARIABLES = ("ValidationNoisyBlocksRaw", "ValidationGtBlocksRaw", "BenchmarkNoisyBlocksRaw")

_SCENE_RE = re.compile(r"^(\d{4})_(\d{3})_([A-Z0-9]{2})_(\d{5})_(\d{5})_(\d{4})_([LNH])$")


def phone_from_make(make: str | None) -> str | None:
    """SIDD phone code for a DNG ``Make`` (``" samsung "`` → ``"S6"``); None when unknown."""
    if not make:
        return None
    return _MAKE_TO_PHONE_FOLDED.get(str(make).strip().casefold())


def parse_scene_name(name: str) -> dict:
    """Split a SIDD scene folder name such as ``0001_001_S6_00100_00060_3200_L``.

    A path is accepted (its last component is parsed). Returns a dict: ``instance`` ("0001"), ``scene``
    ("001"), ``phone`` ("S6"), ``iso`` (int, 100), ``shutter`` (int, 60: exposure 1/60 s), ``temperature``
    (int kelvin, 3200), ``brightness`` ("L" low light, "N" normal, "H" high exposure).
    Raises InputError for a name that does not follow the pattern.
    """
    base = Path(str(name)).name
    m = _SCENE_RE.match(base)
    if not m:
        raise InputError(f"{name}: not a SIDD scene name (expected like 0001_001_S6_00100_00060_3200_L)")
    inst, scene, phone, iso, shutter, temp, bright = m.groups()
    return {"instance": inst, "scene": scene, "phone": phone, "iso": int(iso), "shutter": int(shutter),
            "temperature": int(temp), "brightness": bright}


def _phone_of_scene(name: str) -> str | None:
    try:
        return parse_scene_name(name)["phone"]
    except InputError:
        return None


def block_cfas(n: int = 40, override: str | None = None) -> list[str]:
    """CFA pattern of each of the first ``n`` block-file images (via the phone in :data:`BLOCK_SCENES`).

    ``override`` (e.g. from ``--cfa``) replaces all of them. The block files carry no CFA themselves: this
    table is the only link between image index and phone.
    """
    if override is not None:
        return [check_cfa(override, "--cfa")] * int(n)
    if not 1 <= int(n) <= len(BLOCK_SCENES):
        raise InputError(f"block files: {n} images, but the SIDD table knows {len(BLOCK_SCENES)}; pass a CFA")
    return [PHONE_CFA[parse_scene_name(s)["phone"]] for s in BLOCK_SCENES[:int(n)]]
