"""SIDD file formats (n2n_raw.io.sidd): frames, metadata/CFA, block files, positions, submissions."""
import base64
import os

import h5py
import numpy as np
import pytest
import scipy.io

from realdata import REAL_RAW, real_missing
from n2n_raw.errors import InputError
from n2n_raw.io import sidd
from n2n_raw.sim.sidd_world import PHONE_MAKE_MODEL, clean_mosaic

PHONES = ("GP", "IP", "S6", "N6", "G4")


def raises_for(path, fn, *args, match=None, **kw):
    """Assert ``fn`` raises a one-line InputError whose message starts with ``path``."""
    with pytest.raises(InputError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg
    if match:
        assert match in msg, msg
    return msg


def write_h5_var(path, name, stored, userblock=True, matlab_class=b"single"):
    """An HDF5 file holding ``stored`` as-is (MATLAB style when userblock)."""
    with h5py.File(path, "w", userblock_size=512 if userblock else 0) as f:
        ds = f.create_dataset(name, data=stored)
        ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    if userblock:
        with open(path, "r+b") as fh:
            fh.write(sidd.matlab73_header())


# ------------------------------------------------------------------------------------------------ tables

def test_block_scene_table():
    assert len(sidd.BLOCK_SCENES) == 40 and list(sidd.BLOCK_SCENES) == sorted(sidd.BLOCK_SCENES)
    phones = [sidd.parse_scene_name(s)["phone"] for s in sidd.BLOCK_SCENES]
    assert all(phones.count(p) == 8 for p in PHONES)
    assert sidd.BLOCK_SCENES[0] == "0009_001_S6_00800_00350_3200_L"
    assert sidd.BLOCK_SCENES[10] == "0056_003_N6_03200_04000_5500_N"
    assert sidd.BLOCK_SCENES[39] == "0187_008_IP_01600_01600_3200_L"
    cfas = sidd.block_cfas()
    assert cfas[:5] == ["GRBG", "BGGR", "BGGR", "BGGR", "RGGB"]
    assert sidd.block_cfas(3, override="gbrg") == ["GBRG"] * 3
    with pytest.raises(InputError):
        sidd.block_cfas(2, override="RGBG")
    with pytest.raises(InputError):
        sidd.block_cfas(41)


def test_parse_scene_name():
    d = sidd.parse_scene_name("0001_001_S6_00100_00060_3200_L")
    assert d == {"instance": "0001", "scene": "001", "phone": "S6", "iso": 100, "shutter": 60,
                 "temperature": 3200, "brightness": "L"}
    assert sidd.parse_scene_name("x/Data/0052_002_S6_01600_01000_5500_N")["iso"] == 1600
    for bad in ("0001_001_S6_00100_00060_3200", "0001_001_S6_00100_00060_3200_X", "hello", ""):
        with pytest.raises(InputError):
            sidd.parse_scene_name(bad)


def test_make_to_phone_is_case_insensitive():
    assert sidd.phone_from_make(" SAMSUNG ") == "S6"
    assert sidd.phone_from_make("lge") == "G4"
    assert sidd.phone_from_make("Apple") == "IP"
    assert sidd.phone_from_make("Acme") is None and sidd.phone_from_make(None) is None


# ------------------------------------------------------------------------------------------------ frames

@pytest.mark.parametrize("phone", PHONES)
def test_frame_orientation_and_cfa(tmp_path, phone):
    cfa = sidd.PHONE_CFA[phone]
    h, w = 34, 50  # non-square: a missed transpose changes the shape
    x = clean_mosaic(np.random.default_rng(1), h, w, cfa)
    f = tmp_path / "0001_NOISY_RAW_010.MAT"
    sidd.write_frame(f, x)

    head = f.read_bytes()[:512]
    assert head.startswith(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: ")
    assert b"HDF5 schema 1.00 ." in head[:116]
    assert head[116:124] == b"\x00" * 8 and head[124:128] == b"\x00\x02IM"
    assert f.read_bytes()[512:520] == b"\x89HDF\r\n\x1a\n"
    with h5py.File(f, "r") as hf:  # what MATLAB's column-major storage looks like to h5py
        assert hf["x"].shape == (w, h)
        assert hf["x"].dtype == np.float32
        assert hf["x"].attrs["MATLAB_class"] == b"single"
        assert np.array_equal(hf["x"][()], x.T)

    y = sidd.read_frame(f)
    assert y.dtype == np.float32 and y.shape == (h, w) and y.flags["C_CONTIGUOUS"]
    assert np.array_equal(y, x)

    m = tmp_path / "0001_METADATA_RAW_010.MAT"
    make, model = PHONE_MAKE_MODEL[phone]
    sidd.write_metadata(m, make=make, model=model, cfa=cfa, width=w, height=h, iso=800)
    meta = sidd.read_metadata(m)
    assert (meta.cfa, meta.cfa_source, meta.phone) == (cfa, "UnknownTags", phone)
    assert (meta.make, meta.model, meta.iso, meta.width, meta.height) == (make, model, 800, w, h)
    # The greens (brightest raw sites) sit where the CFA read from the metadata says.
    means = {(dy, dx): y[dy::2, dx::2].mean() for dy in (0, 1) for dx in (0, 1)}
    greens = {divmod(k, 2) for k, c in enumerate(meta.cfa) if c == "G"}
    assert min(means[g] for g in greens) > max(v for k, v in means.items() if k not in greens)


def test_frame_accepts_double_and_v5(tmp_path):
    x = np.random.default_rng(0).random((6, 4))
    f = tmp_path / "d.MAT"
    write_h5_var(f, "x", x.T, matlab_class=b"double")
    y = sidd.read_frame(f)
    assert y.dtype == np.float32 and np.array_equal(y, x.astype(np.float32))
    v5 = tmp_path / "v5.mat"
    scipy.io.savemat(v5, {"x": x.astype(np.float32)})
    assert np.array_equal(sidd.read_frame(v5), x.astype(np.float32))


def test_frame_errors(tmp_path):
    raises_for(tmp_path / "missing.MAT", sidd.read_frame, tmp_path / "missing.MAT", match="no such file")

    rnd = tmp_path / "random.MAT"
    rnd.write_bytes(np.random.default_rng(0).bytes(3000))
    raises_for(rnd, sidd.read_frame, rnd)

    good = tmp_path / "good.MAT"
    sidd.write_frame(good, np.random.default_rng(0).random((64, 48)).astype(np.float32), compress=False)
    trunc = tmp_path / "trunc.MAT"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raises_for(trunc, sidd.read_frame, trunc)

    wrong = tmp_path / "wrongname.MAT"
    write_h5_var(wrong, "y", np.zeros((4, 6), np.float32))
    raises_for(wrong, sidd.read_frame, wrong, match="'x'")

    three = tmp_path / "threed.MAT"
    write_h5_var(three, "x", np.zeros((3, 4, 6), np.float32))
    raises_for(three, sidd.read_frame, three, match="2-D")

    ints = tmp_path / "ints.MAT"
    write_h5_var(ints, "x", np.zeros((4, 6), np.uint16), matlab_class=b"uint16")
    raises_for(ints, sidd.read_frame, ints, match="uint16")

    for bad in (np.nan, np.inf):
        a = np.zeros((4, 6), np.float32)
        a[1, 2] = bad
        nan = tmp_path / f"bad{bad}.MAT"
        sidd.write_frame(nan, a)
        raises_for(nan, sidd.read_frame, nan, match="NaN/Inf")

    folder = tmp_path / "adir"
    folder.mkdir()
    raises_for(folder, sidd.read_frame, folder)


# ------------------------------------------------------------------------------------------------ metadata

@pytest.mark.parametrize("phone", PHONES)
def test_metadata_cfa_sources(tmp_path, phone):
    make, model = PHONE_MAKE_MODEL[phone]
    table = sidd.PHONE_CFA[phone]
    # A pattern that differs from the phone's, to prove the tag (not the table) was used.
    other = next(c for c in sidd.CFAS if c != table)
    for cfa_in in ("UnknownTags", "SubIFDs"):
        m = tmp_path / f"{cfa_in}.MAT"
        sidd.write_metadata(m, make=make, model=model, cfa=other, width=8, height=6, iso=100, cfa_in=cfa_in)
        meta = sidd.read_metadata(m)
        assert (meta.cfa, meta.cfa_source, meta.phone) == (other, cfa_in, phone)
    m = tmp_path / "none.MAT"
    sidd.write_metadata(m, make=make, model=model, cfa=other, width=8, height=6, iso=100, cfa_in="none")
    meta = sidd.read_metadata(m)
    assert (meta.cfa, meta.cfa_source, meta.phone) == (table, "phone table", phone)
    # Unknown Make: only the hint (e.g. the scene name) can say the phone.
    m = tmp_path / "hint.MAT"
    sidd.write_metadata(m, make="Acme", model="X", cfa=other, width=8, height=6, iso=None, cfa_in="none")
    meta = sidd.read_metadata(m, phone_hint=phone)
    assert (meta.cfa, meta.cfa_source, meta.phone, meta.iso) == (table, "phone table", phone, None)
    raises_for(m, sidd.read_metadata, m, match="no CFA")


REAL_META = REAL_RAW / "sidd_0001_METADATA_RAW_010.MAT"
needs_real_meta = pytest.mark.skipif(not REAL_META.is_file(), reason=real_missing(REAL_META.name))


def _tags(md) -> list[tuple[int, list]]:
    """(ID, Value codes) of each UnknownTags entry, read with scipy alone."""
    return [(int(t["ID"].item()), t["Value"].ravel().tolist()) for t in md["UnknownTags"].ravel()]


@needs_real_meta
def test_real_metadata_file_read_as_scipy_sees_it():
    """The metadata of scene 0001 as MATLAB wrote it: every value read_metadata returns equals the struct's."""
    md = scipy.io.loadmat(REAL_META)["metadata"][0, 0]
    codes = dict(_tags(md))[33422]
    meta = sidd.read_metadata(REAL_META)
    assert meta.cfa == "".join("RGB"[c] for c in codes) == "GRBG"  # [1 0 2 1], the spec's S6 pattern
    assert (meta.cfa_source, meta.phone) == ("UnknownTags", "S6")
    assert (meta.make, meta.model) == (md["Make"].item(), md["Model"].item()) == ("samsung", "SM-G925I")
    assert (meta.width, meta.height, meta.iso) == (md["Width"].item(), md["Height"].item(),
                                                   md["ISOSpeedRatings"].item()) == (5328, 3000, 100)
    assert meta.black_level == tuple(float(v) for v in md["BlackLevel"].ravel())
    assert meta.white_level == float(md["WhiteLevel"].item()) == 1023.0
    assert meta.iso == sidd.parse_scene_name("0001_001_S6_00100_00060_3200_L")["iso"]


@needs_real_meta
def test_synthetic_metadata_laid_out_like_the_real_file(tmp_path):
    """The writer behind the synthetic world stores what the reader reads as MATLAB did: same fields, same
    kinds, UnknownTags an N×1 struct array (ID uint16, Value uint8 codes) with the CFA tag second."""
    real = scipy.io.loadmat(REAL_META)["metadata"][0, 0]
    m = tmp_path / "0001_METADATA_RAW_010.MAT"
    sidd.write_metadata(m, make="samsung", model="SM-G925I", cfa="GRBG", width=5328, height=3000, iso=100)
    synth = scipy.io.loadmat(m)["metadata"][0, 0]
    for field in ("Width", "Height", "Make", "Model", "BlackLevel", "WhiteLevel", "AsShotNeutral",
                  "ColorMatrix1", "ColorMatrix2", "Orientation", "ISOSpeedRatings", "UnknownTags"):
        assert field in real.dtype.names and field in synth.dtype.names, field
        assert synth[field].shape == real[field].shape or field == "UnknownTags", field
        assert (synth[field].dtype.kind in "US") == (real[field].dtype.kind in "US"), field
    for md in (real, synth):
        tags = md["UnknownTags"]
        assert tags.shape[1] == 1 and tags.dtype.names == ("ID", "Offset", "Value")
        assert [i for i, _ in _tags(md)][:2] == [33421, 33422] and 51041 in dict(_tags(md))
        assert tags[1, 0]["ID"].dtype == np.uint16 and tags[1, 0]["Value"].dtype == np.uint8
        assert dict(_tags(md))[33422] == [1, 0, 2, 1] and dict(_tags(md))[33421] == [2, 2]
    r, s = sidd.read_metadata(REAL_META), sidd.read_metadata(m)
    assert (s.cfa, s.cfa_source, s.phone, s.make, s.model, s.width, s.height, s.iso) == \
        (r.cfa, r.cfa_source, r.phone, r.make, r.model, r.width, r.height, r.iso)


def test_metadata_subifds_layout(tmp_path):
    m2 = tmp_path / "sub.MAT"
    sidd.write_metadata(m2, make="samsung", model="SM-G925V", cfa="GRBG", width=10, height=6, iso=800,
                        cfa_in="SubIFDs")
    md = scipy.io.loadmat(m2)["metadata"][0, 0]
    assert 33422 not in dict(_tags(md))
    sub = md["SubIFDs"][0, 0][0, 0]  # SubIFDs{1}
    assert dict(_tags(sub))[33422] == [1, 0, 2, 1]


def test_metadata_robust_to_shapes(tmp_path):
    """Values as double rows, UnknownTags as a column / cell of structs, CFA tag not second."""
    ut = np.empty((3, 1), dtype=[("ID", object), ("Offset", object), ("Value", object)])
    ut[0, 0] = (33422.0, 1.0, np.array([[2.0, 1.0, 1.0, 0.0]]))  # BGGR, as doubles, first entry
    ut[1, 0] = (33421.0, 2.0, np.array([[2.0, 2.0]]))
    ut[2, 0] = (51041.0, 3.0, np.array([[1e-5, 1e-7]]))
    f1 = tmp_path / "col.MAT"
    scipy.io.savemat(f1, {"metadata": {"Make": "samsung", "Width": 8.0, "UnknownTags": ut}})
    meta = sidd.read_metadata(f1)  # the tag wins over the phone table (S6 would be GRBG)
    assert (meta.cfa, meta.cfa_source, meta.phone) == ("BGGR", "UnknownTags", "S6")

    cell = np.empty((1, 2), dtype=object)
    cell[0, 0] = {"ID": 254.0, "Offset": 0.0, "Value": 0.0}
    cell[0, 1] = {"ID": 33422.0, "Offset": 0.0, "Value": np.array([1, 2, 0, 1], np.uint8)}
    f2 = tmp_path / "cell.MAT"
    scipy.io.savemat(f2, {"metadata": {"Make": "Apple", "Width": 8.0, "UnknownTags": cell}})
    assert sidd.read_metadata(f2).cfa == "GBRG"

    # A non-Bayer repeat pattern or codes that are not a Bayer cell fall through to the phone table.
    ut2 = np.empty((1, 2), dtype=[("ID", object), ("Offset", object), ("Value", object)])
    ut2[0, 0] = (33421.0, 0.0, np.array([[2.0, 2.0]]))
    ut2[0, 1] = (33422.0, 0.0, np.array([[0, 0, 2, 1]], np.uint8))
    f3 = tmp_path / "weird.MAT"
    scipy.io.savemat(f3, {"metadata": {"Make": "motorola", "Width": 8.0, "UnknownTags": ut2}})
    meta = sidd.read_metadata(f3)
    assert (meta.cfa, meta.cfa_source) == ("BGGR", "phone table")


def test_metadata_errors(tmp_path):
    raises_for(tmp_path / "nope.MAT", sidd.read_metadata, tmp_path / "nope.MAT")
    rnd = tmp_path / "rnd.MAT"
    rnd.write_bytes(os.urandom(700))
    raises_for(rnd, sidd.read_metadata, rnd)
    other = tmp_path / "other.MAT"
    scipy.io.savemat(other, {"meta": {"Make": "Apple"}})
    raises_for(other, sidd.read_metadata, other, match="'metadata'")
    v73 = tmp_path / "v73.MAT"
    sidd.write_frame(v73, np.zeros((2, 2), np.float32))
    raises_for(v73, sidd.read_metadata, v73, match="v7.3")


# ------------------------------------------------------------------------------------------------ finding

def test_find_frames(tmp_path):
    x = np.zeros((4, 6), np.float32)
    data = tmp_path / "SIDD_Medium_Raw" / "Data"
    s1, s2 = data / "0002_001_IP_00100_00060_3200_L", data / "0001_001_S6_00100_00060_3200_N"
    for folder, idx in ((s1, "010"), (s1, "011"), (s2, "010")):
        sidd.write_frame(folder / f"{folder.name[:4]}_NOISY_RAW_{idx}.MAT", x)
    sidd.write_frame(s1 / "0002_GT_RAW_010.MAT", x)
    sidd.write_metadata(s1 / "0002_METADATA_RAW_010.MAT", make="Apple", model="iPhone 7", cfa="RGGB",
                        width=6, height=4, iso=100)
    (s2 / "0001_noisy_raw_011.mat").write_bytes(b"")  # lower-case names count too
    (s2 / "notes.txt").write_text("x")
    sets = sidd.find_frames(tmp_path / "SIDD_Medium_Raw")
    assert [(s.scene, s.index) for s in sets] == [
        (s2.name, "010"), (s2.name, "011"), (s1.name, "010"), (s1.name, "011")]
    assert sets[2].gt == s1 / "0002_GT_RAW_010.MAT" and sets[2].meta == s1 / "0002_METADATA_RAW_010.MAT"
    assert sets[3].gt is None and sets[3].meta is None
    # One file's capture is looked up as find_frames does; a GT file finds the same METADATA.
    assert [sidd.frame_set(s.noisy) for s in sets] == sets
    gt = sidd.frame_set(s1 / "0002_GT_RAW_010.MAT")
    assert (gt.scene, gt.noisy, gt.meta, gt.index) == (s1.name, s1 / "0002_GT_RAW_010.MAT", sets[2].meta, "010")
    other = sidd.frame_set(s2 / "notes.txt")
    assert (other.scene, other.gt, other.meta) == (s2.name, None, None)
    # Without a Data folder, the scene folders may sit directly under the root.
    assert len(sidd.find_frames(data)) == 4
    raises_for(tmp_path / "missing", sidd.find_frames, tmp_path / "missing")
    (tmp_path / "empty" / "scene").mkdir(parents=True)
    raises_for(tmp_path / "empty", sidd.find_frames, tmp_path / "empty", match="NOISY")


@needs_real_meta
def test_denoise_reads_a_frames_cfa_as_prepare_and_train_do(tmp_path):
    """A .MAT given to denoise: the real METADATA beside it (lower-case name) wins over the folder's phone,
    without one the folder's phone (IP: RGGB) says the CFA, and with neither the user is asked for --cfa."""
    from n2n_raw.inference.photos import read_input
    scene = tmp_path / "0001_001_IP_00100_00060_3200_L"
    frame = scene / "0001_NOISY_RAW_010.MAT"
    sidd.write_frame(frame, np.full((6, 8), 0.25, np.float32))
    meta = scene / "0001_metadata_raw_010.mat"
    meta.write_bytes(REAL_META.read_bytes())
    assert read_input(frame, "raw").cfa == "GRBG"
    assert read_input(frame, "raw", cfa="BGGR").cfa == "BGGR"
    meta.unlink()
    assert read_input(frame, "raw").cfa == "RGGB"
    plain = tmp_path / "plain" / "0001_NOISY_RAW_010.MAT"
    plain.parent.mkdir()
    frame.rename(plain)
    raises_for(plain, read_input, plain, "raw", match="pass --cfa")


# ------------------------------------------------------------------------------------------------ blocks

def test_blocks_roundtrip(tmp_path):
    b = np.random.default_rng(0).random((3, 5, 6, 4)).astype(np.float32)
    f = tmp_path / "ValidationNoisyBlocksRaw.mat"
    sidd.write_blocks(f, b)
    raw = scipy.io.loadmat(f)
    assert raw["ValidationNoisyBlocksRaw"].dtype == np.float32
    assert np.array_equal(raw["ValidationNoisyBlocksRaw"], b)
    got = sidd.read_blocks(f)
    assert got.dtype == np.float32 and got.shape == (3, 5, 6, 4) and np.array_equal(got, b)
    # A renamed file that holds one SIDD variable is still understood.
    renamed = tmp_path / "val_noisy.mat"
    renamed.write_bytes(f.read_bytes())
    assert np.array_equal(sidd.read_blocks(renamed), b)
    # MATLAB -v7.3 block file: axes reversed on disk.
    v73 = tmp_path / "ValidationGtBlocksRaw.mat"
    write_h5_var(v73, "ValidationGtBlocksRaw", np.transpose(b))
    assert np.array_equal(sidd.read_blocks(v73), b)


@pytest.mark.parametrize("case", ["odd", "ints", "nan", "inf", "3d", "many", "varname", "twovars"])
def test_block_errors(tmp_path, case):
    f = tmp_path / "BenchmarkNoisyBlocksRaw.mat"
    var = "BenchmarkNoisyBlocksRaw"
    a = np.zeros((2, 3, 4, 4), np.float32)
    extra = {}
    if case == "odd":
        a = np.zeros((2, 3, 255, 256), np.float32)
    elif case == "ints":
        a = np.zeros((2, 3, 4, 4), np.uint8)
    elif case in ("nan", "inf"):
        a[1, 2, 3, 0] = np.nan if case == "nan" else -np.inf
    elif case == "3d":
        a = np.zeros((3, 4, 4), np.float32)
    elif case == "many":
        a = np.zeros((41, 1, 2, 2), np.float32)
    elif case == "varname":
        var = "x"
    elif case == "twovars":
        var, extra = "a", {"b": np.zeros(3)}
    scipy.io.savemat(f, {var: a, **extra})
    expected = {"odd": "even", "ints": "uint8", "nan": "NaN", "inf": "NaN/Inf", "3d": "4-D",
                "many": "1..40", "varname": "'BenchmarkNoisyBlocksRaw'",
                "twovars": "'BenchmarkNoisyBlocksRaw'"}[case]
    raises_for(f, sidd.read_blocks, f, match=expected)


def test_block_read_errors_files(tmp_path):
    raises_for(tmp_path / "ValidationNoisyBlocksRaw.mat", sidd.read_blocks,
               tmp_path / "ValidationNoisyBlocksRaw.mat", match="no such file")
    rnd = tmp_path / "ValidationNoisyBlocksRaw.mat"
    rnd.write_bytes(os.urandom(4096))
    raises_for(rnd, sidd.read_blocks, rnd)
    good = tmp_path / "good.mat"
    sidd.write_blocks(good, np.zeros((2, 2, 8, 8), np.float32), varname="ValidationGtBlocksRaw")
    trunc = tmp_path / "ValidationGtBlocksRaw.mat"
    trunc.write_bytes(good.read_bytes()[:900])
    raises_for(trunc, sidd.read_blocks, trunc)


def test_block_positions_roundtrip(tmp_path):
    pos = np.array([[1 + 2 * k, 3 + 4 * k, 256, 256] for k in range(32)])
    f = tmp_path / "BenchmarkBlocks32.mat"
    sidd.write_block_positions(f, pos)
    raw = scipy.io.loadmat(f)["BenchmarkBlocks32"]
    assert raw.dtype == np.uint16 and raw.shape == (32, 4)
    got = sidd.read_block_positions(f)
    assert got.shape == (32, 4) and np.issubdtype(got.dtype, np.integer) and np.array_equal(got, pos)
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(bad, {"BenchmarkBlocks32": np.zeros((32, 3))})
    raises_for(bad, sidd.read_block_positions, bad, match="(32, 4)")


def test_block_positions_checked_for_even_starts(tmp_path):
    """Positions written by scipy (not n2n-raw): odd 1-based starts pass; one even 1-based start (odd 0-based)
    fails naming the block; a size other than the blocks' fails; a file beside the blocks is found."""
    pos = np.array([[1 + 2 * k, 3 + 4 * k, 8, 6] for k in range(32)], np.uint16)
    ok = tmp_path / "BenchmarkBlocks32.mat"
    scipy.io.savemat(ok, {"BenchmarkBlocks32": pos})
    assert np.array_equal(sidd.check_block_positions(ok, (8, 6)), pos)
    shifted = pos.copy()
    shifted[6, 1] += 1  # block 7 starts on an odd 0-based column: its CFA phase is not the table's
    odd = tmp_path / "odd" / "BenchmarkBlocks32.mat"
    odd.parent.mkdir()
    scipy.io.savemat(odd, {"BenchmarkBlocks32": shifted})
    raises_for(odd, sidd.check_block_positions, odd, match="block 7 starts at 0-based row 12, column 27")
    raises_for(ok, sidd.check_block_positions, ok, (8, 8), match="block 1 is 8×6 but the block file's blocks are 8×8")
    blocks = odd.parent / "BenchmarkNoisyBlocksRaw.mat"
    sidd.write_blocks(blocks, np.zeros((2, 32, 8, 6), np.float32))
    assert sidd.positions_beside(blocks) == odd
    raises_for(odd, sidd.read_checked_blocks, blocks, match="even row and column")
    assert sidd.read_checked_blocks(blocks, ok).shape == (2, 32, 8, 6)  # an explicit good file wins
    odd.unlink()
    assert sidd.positions_beside(blocks) is None and sidd.read_checked_blocks(blocks).shape == (2, 32, 8, 6)


# ------------------------------------------------------------------------------------------------ submissions

def blocks_for_submission(n=3, b=5, h=6, w=4):
    return np.random.default_rng(7).random((n, b, h, w)).astype(np.float32)


def test_submission_mat(tmp_path):
    blocks = blocks_for_submission()
    f = tmp_path / "SubmitRaw.mat"
    opt = {"MethodName": "N2N", "Authors": "A. B.", "PaperTitle": "T", "Venue": "V", "MachineSpecs": "cpu"}
    sidd.write_submission_mat(f, blocks, 1.25, opt)
    raw = scipy.io.loadmat(f)
    cell = raw["DenoisedBlocksRaw"]
    assert cell.dtype == object and cell.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            assert cell[i, j].dtype == np.float32 and cell[i, j].shape == (6, 4)
            assert np.array_equal(cell[i, j], blocks[i, j])
    assert raw["TimeMPRaw"].item() == 1.25
    od = raw["OptionalData"][0, 0]
    assert set(sidd.OPTIONAL_FIELDS) <= set(od.dtype.names)
    assert {k: str(od[k][0]) for k in sidd.OPTIONAL_FIELDS} == opt
    got = sidd.read_submission(f)
    assert got.dtype == np.float32 and np.array_equal(got, blocks)
    sidd.verify_submission(f, blocks)
    wrong = blocks.copy()
    wrong[2, 4, 0, 0] += 1e-3
    with pytest.raises(RuntimeError, match=r"block \(2, 4\)"):
        sidd.verify_submission(f, wrong)
    with pytest.raises(RuntimeError, match="shape"):
        sidd.verify_submission(f, blocks[:2])


def test_submission_csv(tmp_path):
    blocks = blocks_for_submission()
    f = tmp_path / "SubmitRaw.csv"
    sidd.write_submission_csv(f, blocks)
    lines = f.read_text().splitlines()
    assert lines[0] == "ID,BLOCK" and len(lines) == 1 + 15
    for k, line in enumerate(lines[1:]):
        sid, b64 = line.split(",")
        assert int(sid) == k
        decoded = np.frombuffer(base64.b64decode(b64), dtype="<f4").reshape(6, 4)
        assert np.array_equal(decoded, blocks[k // 5, k % 5])
    got = sidd.read_submission(f, block_shape=(6, 4), grid=(3, 5))
    assert got.dtype == np.float32 and np.array_equal(got, blocks)
    sidd.verify_submission(f, blocks)
    swapped = blocks.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    with pytest.raises(RuntimeError, match="order"):
        sidd.verify_submission(f, swapped)


def test_submission_csv_defaults_and_errors(tmp_path):
    blocks = np.random.default_rng(3).random((2, 32, 8, 8)).astype(np.float32)
    f = tmp_path / "SubmitRaw.csv"
    sidd.write_submission_csv(f, blocks)
    assert np.array_equal(sidd.read_submission(f), blocks)  # square blocks and B = 32 inferred
    # Rows out of order are put back in ID order on reading, but verify insists on ascending IDs.
    lines = f.read_text().splitlines()
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    assert np.array_equal(sidd.read_submission(shuffled), blocks)
    with pytest.raises(RuntimeError, match="ascending"):
        sidd.verify_submission(shuffled, blocks)
    bad = tmp_path / "bad.csv"
    bad.write_text("id;block\n0;xx\n")
    raises_for(bad, sidd.read_submission, bad, match="ID,BLOCK")
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([lines[0], lines[1], lines[1]]) + "\n")
    raises_for(dup, sidd.read_submission, dup, grid=(1, 2), match="IDs")


def test_submission_mat_v73_and_4d(tmp_path):
    """The MATLAB kit's -v7.3 cell, and the 4-D single array some published submissions used."""
    blocks = blocks_for_submission(2, 3, 4, 6)
    f = tmp_path / "SubmitRaw73.mat"
    with h5py.File(f, "w", userblock_size=512) as hf:
        refs = hf.create_group("#refs#")
        ref_arr = np.empty((3, 2), dtype=h5py.ref_dtype)  # (B, N): column-major cell
        for i in range(2):
            for j in range(3):
                ds = refs.create_dataset(f"c{i}_{j}", data=blocks[i, j].T)
                ds.attrs["MATLAB_class"] = np.bytes_(b"single")
                ref_arr[j, i] = ds.ref
        cell = hf.create_dataset("DenoisedBlocksRaw", data=ref_arr)
        cell.attrs["MATLAB_class"] = np.bytes_(b"cell")
        hf.create_dataset("TimeMPRaw", data=np.array([[0.5]]))
        hf.create_group("OptionalData")
    with open(f, "r+b") as fh:
        fh.write(sidd.matlab73_header())
    assert np.array_equal(sidd.read_submission(f), blocks)
    sidd.verify_submission(f, blocks)

    g = tmp_path / "Submit4d.mat"
    scipy.io.savemat(g, {"DenoisedBlocksRaw": blocks, "TimeMPRaw": 1.0, "OptionalData": {"MethodName": "m"}})
    assert np.array_equal(sidd.read_submission(g), blocks)
    sidd.verify_submission(g, blocks)
    h = tmp_path / "Submit64.mat"
    scipy.io.savemat(h, {"DenoisedBlocksRaw": blocks.astype(np.float64), "TimeMPRaw": 1.0,
                         "OptionalData": {"MethodName": "m"}})
    with pytest.raises(RuntimeError, match="float32"):
        sidd.verify_submission(h, blocks)


# ------------------------------------------------------------------------------------------------ overwriting

WRITERS = {
    "frame": lambda p, force: sidd.write_frame(p, np.ones((4, 6), np.float32), force=force),
    "metadata": lambda p, force: sidd.write_metadata(p, make="Apple", model="iPhone 7", cfa="RGGB", width=6,
                                                     height=4, iso=100, force=force),
    "blocks": lambda p, force: sidd.write_blocks(p, np.ones((1, 1, 2, 2), np.float32), force=force),
    "positions": lambda p, force: sidd.write_block_positions(p, np.ones((32, 4), int), force=force),
    "sub_mat": lambda p, force: sidd.write_submission_mat(p, np.ones((1, 1, 2, 2), np.float32), 1.0, {},
                                                          force=force),
    "sub_csv": lambda p, force: sidd.write_submission_csv(p, np.ones((1, 1, 2, 2), np.float32), force=force),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writers_refuse_to_overwrite(tmp_path, kind):
    p = tmp_path / ("out.csv" if kind == "sub_csv" else "out.mat")
    p.write_bytes(b"precious")
    raises_for(p, WRITERS[kind], p, False, match="already exists")
    assert p.read_bytes() == b"precious"
    WRITERS[kind](p, True)
    assert p.read_bytes() != b"precious"
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]  # no temporary file left behind
