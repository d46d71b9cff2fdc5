"""Checkpoints: exact round trips, retention, resolution, and refusal of anything that is not plain tensors."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from n2n_raw import checkpoint as ckpt
from n2n_raw.errors import InputError
from n2n_raw.method.unet import UNet

META = {"mode": "srgb", "noise": "gauss25", "epoch": 1}


def trained(seed: int = 0, steps: int = 1, **kw):
    """A small U-Net with an Adam state after a few real steps."""
    torch.manual_seed(seed)
    model = UNet(3, 3, "standard", **kw)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.rand(1, 3, 32, 32)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - x) ** 2).mean().backward()
        opt.step()
    return model, opt, x


def _step(model, opt, x):
    opt.zero_grad()
    ((model(x) - x) ** 2).mean().backward()
    opt.step()


def test_round_trip_is_exact_for_model_and_adam(tmp_path):
    model, opt, x = trained()
    opt.param_groups[0]["lr"] = 1.5e-4  # a scheduled LR must come back too
    path = ckpt.save_checkpoint(tmp_path, 7, model, opt, META)
    assert path == tmp_path / "ckpt-00000007.json"
    assert path.with_suffix(".safetensors").is_file()

    model2, meta = ckpt.load_model(tmp_path)
    assert not model2.training
    assert meta["step"] == 7 and meta["mode"] == "srgb" and meta["model"]["in_ch"] == 3
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k

    meta, tensors = ckpt.load_checkpoint(path)
    opt2 = torch.optim.Adam(model2.parameters(), lr=3e-4)
    ckpt.restore_optimizer(opt2, meta, tensors)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 1.5e-4
    # JSON turns tuples (betas) into lists; the values must agree
    norm = lambda gs: [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in gs]  # noqa: E731
    assert norm(s1["param_groups"]) == norm(s2["param_groups"])
    assert s1["state"].keys() == s2["state"].keys()
    for pid in s1["state"]:
        for name, v in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][pid][name])), (pid, name)

    # continuing from the checkpoint is bit-identical to continuing the original
    model2.train()
    _step(model, opt, x)
    _step(model2, opt2, x)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_no_optimizer_and_residual_flag(tmp_path):
    model, _, _ = trained(residual=True, steps=0)
    ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    meta, tensors = ckpt.load_checkpoint(tmp_path)
    assert meta["optim_param_groups"] is None
    assert not any(k.startswith("optim.") for k in tensors)
    m2, _ = ckpt.load_model(tmp_path)
    assert m2.residual is True
    opt = torch.optim.Adam(m2.parameters())
    ckpt.restore_optimizer(opt, meta, tensors)  # nothing to restore: a no-op
    assert opt.state_dict()["state"] == {}


def test_keep_newest(tmp_path):
    model, opt, _ = trained(steps=0)
    for s in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, s, model, opt, META, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["ckpt-00000004.json", "ckpt-00000005.json"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["ckpt-00000004.json", "ckpt-00000004.safetensors",
                    "ckpt-00000005.json", "ckpt-00000005.safetensors"]


def test_best_is_kept_beside_the_newest(tmp_path):
    """keep=2 with validation PSNRs 30, 35, 32, 31, 33: step 2 (35 dB) survives beside steps 4 and 5, at
    every point of the run; best/last pick it and the newest."""
    model, opt, _ = trained(steps=0)
    for s, psnr in zip((1, 2, 3, 4, 5), (30.0, 35.0, 32.0, 31.0, 33.0)):
        ckpt.save_checkpoint(tmp_path, s, model, opt, {**META, "metrics": {"val_psnr": psnr}}, keep=2)
        assert ckpt.best_checkpoint(tmp_path).name == ("ckpt-00000001.json" if s == 1 else "ckpt-00000002.json")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "ckpt-00000002.json", "ckpt-00000004.json", "ckpt-00000005.json"]
    assert ckpt.resolve(tmp_path, "best").name == "ckpt-00000002.json"
    assert ckpt.resolve(tmp_path, "last").name == "ckpt-00000005.json"
    _, meta = ckpt.load_model(tmp_path)  # best is the default
    assert meta["step"] == 2 and meta["chosen"] == f"best of {tmp_path.name} (step 2, validation 35.00 dB)"
    assert ckpt.load_model(tmp_path, which="last")[1]["chosen"].startswith("last of")
    # a file is taken as it is, whatever which says
    assert ckpt.load_model(tmp_path / "ckpt-00000004.json", which="best")[1]["step"] == 4
    with pytest.raises(InputError, match="--which: unknown value 'first'"):
        ckpt.resolve(tmp_path, "first")


def test_best_without_validation_is_the_newest(tmp_path):
    model, _, _ = trained(steps=0)
    for s in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, s, model, None, {**META, "metrics": {"loss": 0.1}}, keep=2)
    assert ckpt.best_checkpoint(tmp_path) is None
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000002.json", "ckpt-00000003.json"]
    _, meta = ckpt.load_model(tmp_path, which="best")
    assert meta["step"] == 3 and "not validated" in meta["chosen"]


def test_keep_zero_keeps_all(tmp_path):
    model, _, _ = trained(steps=0)
    for s in (3, 1, 2):
        ckpt.save_checkpoint(tmp_path, s, model, None, META, keep=0)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "ckpt-00000001.json", "ckpt-00000002.json", "ckpt-00000003.json"]


def test_resolve_picks_newest_complete(tmp_path):
    model, _, _ = trained(steps=0)
    for s in (9, 10, 200):
        ckpt.save_checkpoint(tmp_path, s, model, None, META, keep=0)
    assert ckpt.resolve(tmp_path) == tmp_path / "ckpt-00000200.json"
    # a checkpoint whose JSON was never written (killed mid-save) is not complete
    (tmp_path / "ckpt-00000300.safetensors").write_bytes(b"partial")
    # and a JSON without tensors is not either
    (tmp_path / "ckpt-00000400.json").write_text("{}")
    assert ckpt.resolve(tmp_path) == tmp_path / "ckpt-00000200.json"
    # explicit files resolve to their JSON
    assert ckpt.resolve(tmp_path / "ckpt-00000009.safetensors") == tmp_path / "ckpt-00000009.json"
    assert ckpt.resolve(str(tmp_path / "ckpt-00000010.json")) == tmp_path / "ckpt-00000010.json"
    # loading the folder loads step 200
    assert ckpt.load_model(tmp_path)[1]["step"] == 200


def test_resolve_errors(tmp_path):
    with pytest.raises(InputError, match="no checkpoint"):
        ckpt.resolve(tmp_path)
    with pytest.raises(InputError, match="no such checkpoint"):
        ckpt.resolve(tmp_path / "missing.safetensors")
    (tmp_path / "lonely.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match="sidecar"):
        ckpt.resolve(tmp_path / "lonely.safetensors")


class _Evil:
    """Unpickling this creates the marker file (open(path, 'w'))."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pt(tmp_path, marker):
    """A valid checkpoint's JSON with a .pt beside it holding a pickled object with a malicious __reduce__."""
    model, _, _ = trained(steps=0)
    ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    pt = tmp_path / "ckpt-00000001.pt"
    payload = {f"model.{k}": v for k, v in model.state_dict().items()}
    payload["model.enc0.weight"] = _Evil(marker)
    torch.save(payload, pt)
    return pt


def test_malicious_pt_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "PWNED"
    pt = _evil_pt(tmp_path, marker)
    with pytest.raises(InputError, match="refused"):
        ckpt.load_checkpoint(pt)
    with pytest.raises(InputError):
        ckpt.load_model(pt)
    assert not marker.exists()


def test_malicious_payload_is_live(tmp_path):
    """Control: full unpickling of the same file *does* run the payload, so the refusal above is meaningful."""
    marker = tmp_path / "PWNED"
    pt = _evil_pt(tmp_path, marker)
    torch.load(pt, weights_only=False)
    assert marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    model, _, _ = trained(steps=0)
    ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    pt = tmp_path / "ckpt-00000001.pth"
    pt.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(InputError, match="refused"):
        ckpt.load_checkpoint(pt)
    assert not marker.exists()


def test_tensor_only_pt_loads(tmp_path):
    model, _, _ = trained(seed=3, steps=0)
    ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    pt = tmp_path / "ckpt-00000001.pt"
    torch.save({f"model.{k}": v.clone() for k, v in model.state_dict().items()}, pt)
    m2, _ = ckpt.load_model(pt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k])


def test_pt_with_non_tensor_values_is_refused(tmp_path):
    model, _, _ = trained(steps=0)
    ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    pt = tmp_path / "ckpt-00000001.pt"
    torch.save({"model.x": 3}, pt)
    with pytest.raises(InputError, match="refused"):
        ckpt.load_checkpoint(pt)


def _edit_meta(path, **changes):
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _edit_tensors(path, edit):
    """Rewrite the checkpoint's safetensors file with ``edit(tensors)`` applied in place."""
    st = path.with_suffix(".safetensors")
    tensors = load_file(str(st))
    edit(tensors)
    save_file(tensors, str(st))


def test_wrong_arch_format_or_json_is_refused(tmp_path):
    model, _, _ = trained(steps=0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    _edit_meta(path, arch="dncnn")
    with pytest.raises(InputError, match="architecture"):
        ckpt.load_model(path)
    _edit_meta(path, arch=ckpt.ARCH, format="something-else")
    with pytest.raises(InputError, match="not an n2n-raw checkpoint"):
        ckpt.load_model(path)
    path.write_text("not json {")
    with pytest.raises(InputError, match="not JSON"):
        ckpt.load_model(path)


def test_wrong_tensor_shapes_are_refused(tmp_path):
    model, _, _ = trained(steps=0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    _edit_tensors(path, lambda t: t.update({"model.enc0.weight": torch.zeros(48, 3, 5, 5)}))
    with pytest.raises(InputError, match="do not fit"):
        ckpt.load_model(path)


def test_channel_mismatch_between_meta_and_tensors_is_refused(tmp_path):
    model, _, _ = trained(steps=0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    meta = json.loads(path.read_text())
    meta["model"]["in_ch"] = meta["model"]["out_ch"] = 4
    path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="do not fit"):
        ckpt.load_model(path)


def test_missing_tensor_is_refused(tmp_path):
    model, _, _ = trained(steps=0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    _edit_tensors(path, lambda t: t.pop("model.head.2.bias"))
    with pytest.raises(InputError):
        ckpt.load_model(path)


def test_corrupt_safetensors_is_refused(tmp_path):
    model, _, _ = trained(steps=0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    path.with_suffix(".safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="unreadable"):
        ckpt.load_model(path)


def test_mode_mismatch_is_refused(tmp_path):
    model, _, _ = trained(steps=0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, None, META)
    with pytest.raises(InputError, match="srgb checkpoint, not raw"):
        ckpt.load_model(path, expect_mode="raw")
    m, meta = ckpt.load_model(path, expect_mode="srgb")
    assert meta["mode"] == "srgb"
