"""Hardware choices: per-device defaults, the whole compiled step (no graph breaks), its eager fallback,
bf16 on request, and where the training set lives (device, pinned host memory, host)."""
import numpy as np
import pytest
import torch

from n2n_raw import accel
from n2n_raw.training.batches import DeviceCropper, flat_nbytes
from n2n_raw.training.sources import Item, RawSource, SrgbSource
from n2n_raw.errors import InputError
from n2n_raw.method.loss import n2n_loss
from n2n_raw.method.subsample import draw_masks
from n2n_raw.method.unet import UNet

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU


@pytest.mark.parametrize("device,compile,graphs,batch,want", [
    (CPU, "auto", "auto", 4, (False, False)),
    (CPU, "on", "auto", 4, (True, False)),
    (CUDA, "auto", "auto", 4, (True, True)),         # small batches: launch-bound, graphs help
    (CUDA, "auto", "auto", 16, (True, True)),
    (CUDA, "auto", "auto", 17, (True, False)),
    (CUDA, "off", "auto", 4, (False, False)),         # no compile, so no automatic graphs
    (CUDA, "off", "on", 4, (True, True)),             # asking for graphs asks for compilation
    (CUDA, "on", "off", 4, (True, False)),
])
def test_compile_plan(device, compile, graphs, batch, want):
    assert accel.compile_plan(device, compile, graphs, batch) == want


def test_compile_plan_under_ddp_leaves_graphs_to_the_user():
    assert accel.compile_plan(CUDA, "auto", "auto", 4, world=2) == (True, False)
    assert accel.compile_plan(CUDA, "auto", "on", 4, world=2) == (True, True)


def test_compile_plan_refuses_graphs_without_cuda_and_unknown_values():
    with pytest.raises(InputError, match="--cuda-graphs: on needs a CUDA device"):
        accel.compile_plan(CPU, "auto", "on", 4)
    with pytest.raises(InputError, match="--compile: unknown value 'yes'"):
        accel.compile_plan(CPU, "yes", "auto", 4)


@pytest.mark.parametrize("device,precision,want", [
    (CPU, "auto", False), (CPU, "bf16", True), (CPU, "fp32", False),
    (CUDA, "auto", True), (CUDA, "bf16", True), (CUDA, "fp32", False)])
def test_bf16_choice(device, precision, want):
    assert accel.use_bf16(device, precision) is want


@pytest.mark.parametrize("precision,want", [("auto", "fp32"), ("fp32", "fp32"), ("bf16", "bf16")])
def test_inference_is_fp32_unless_bf16_is_asked_for(precision, want):
    """Scores, submissions and files: ``auto`` means fp32 there, on CUDA too (training's auto is bf16)."""
    assert accel.inference_precision(precision) == want
    assert accel.use_bf16(CUDA, accel.inference_precision(precision)) is (want == "bf16")


def test_inference_precision_refuses_unknown_values():
    with pytest.raises(InputError, match="--precision: unknown value 'fp16'"):
        accel.inference_precision("fp16")


def test_bf16_on_cpu_really_runs_in_bf16():
    net = UNet(3, 3).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        with accel.autocast(CPU, "bf16"):
            low = net(x)
        with accel.autocast(CPU, "fp32"):
            same = net(x)
    assert low.dtype == torch.bfloat16 and same.dtype == torch.float32
    assert torch.equal(same, ref)
    err = (low.float() - ref).abs().max().item()
    assert 0 < err < 0.05  # rounded, not broken


@pytest.mark.parametrize("setting,device,nbytes,free,want", [
    ("auto", CPU, 10, None, "host"),
    ("on", CPU, 10, None, "device"),
    ("pinned", CPU, 10, None, "device"),   # no pinned memory without CUDA: the set is in host memory anyway
    ("off", CUDA, 10, 100, "host"),
    ("auto", CUDA, 50, 100, "device"),     # at most half the free memory
    ("auto", CUDA, 51, 100, "pinned"),
    ("on", CUDA, 500, 100, "device"),      # asked for: the user's call
    ("pinned", CUDA, 10, 100, "pinned"),
])
def test_data_storage(setting, device, nbytes, free, want):
    assert accel.data_storage(setting, device, nbytes, free, host_free_bytes=1000) == want


def test_data_storage_auto_falls_back_to_host_crops_when_the_set_fits_neither_memory():
    assert accel.data_storage("auto", CUDA, 501, 100, host_free_bytes=1000) == "host"
    assert accel.data_storage("auto", CUDA, 500, 100, host_free_bytes=1000) == "pinned"


def test_data_storage_rejects_unknown_values():
    with pytest.raises(InputError, match="--data-on-device: unknown value 'gpu'"):
        accel.data_storage("gpu", CPU, 1)


def _loss_setup(channels=3, size=64, batch=2):
    torch.manual_seed(0)
    net = UNet(channels, channels)
    g = torch.Generator().manual_seed(1)
    noisy = torch.rand(batch, channels, size, size, generator=g)
    masks = draw_masks(batch, size, size, g)
    return net, noisy, masks


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_whole_loss_step_compiles_as_one_graph(precision):
    """fullgraph=True turns any graph break into an error; aot_eager traces forward and backward without
    a compiler toolchain, so the CPU suite proves what CUDA compiles."""
    net, noisy, masks = _loss_setup()

    def loss_fn(y, m, gamma):
        with accel.autocast(CPU, precision):
            return n2n_loss(net, y, m, gamma)

    gamma = torch.tensor(0.7)
    ref = loss_fn(noisy, masks, gamma)
    ref[0].backward()
    ref_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    got = compiled(noisy, masks, gamma)
    got[0].backward()
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for p, r in zip(net.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, r, rtol=1e-4, atol=1e-6)
    # A new Λ is a new tensor value, not a new graph.
    counters = torch._dynamo.utils.counters["stats"]
    before = counters["unique_graphs"]
    assert before >= 1
    compiled(noisy, masks, torch.tensor(1.4))
    assert counters["unique_graphs"] == before


def test_training_step_eager_does_forward_and_backward():
    net, noisy, masks = _loss_setup()
    step = accel.training_step(lambda y, m, g: n2n_loss(net, y, m, g), compiled=False, graphs=False)
    loss, rec, reg = step(noisy, masks, torch.tensor(0.5))
    assert not loss.requires_grad and loss.item() == pytest.approx(rec.item() + 0.5 * reg.item(), rel=1e-6)
    assert all(p.grad is not None for p in net.parameters())


def _breaking_loss(net):
    def f(y, m, g):
        loss = n2n_loss(net, y, m, g)
        torch._dynamo.graph_break()  # what fullgraph must refuse
        return loss
    return f


def test_training_step_falls_back_to_eager_with_a_warning():
    net, noisy, masks = _loss_setup()
    said, resets = [], []
    torch._dynamo.reset()
    step = accel.training_step(_breaking_loss(net), compiled=True, graphs=False, log=said.append,
                               reset=lambda: resets.append(1))
    loss, _, _ = step(noisy, masks, torch.tensor(0.5))
    eager, _, _ = n2n_loss(net, noisy, masks, 0.5)
    assert len(said) == 1 and said[0].startswith("warning: compiling the training step failed")
    assert resets == [1] and torch.allclose(loss, eager.detach())
    step(noisy, masks, torch.tensor(0.5))  # later steps stay eager, no second warning
    assert len(said) == 1


def test_training_step_asked_to_compile_reports_failure_in_one_line():
    net, noisy, masks = _loss_setup()
    torch._dynamo.reset()
    step = accel.training_step(_breaking_loss(net), compiled=True, graphs=False, strict=True)
    with pytest.raises(InputError, match=r"^--compile: compiling the training step failed") as e:
        step(noisy, masks, torch.tensor(0.5))
    assert "\n" not in str(e.value)


def test_pinned_cropper_cuts_the_same_crops_on_the_host():
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 256, (70 + i, 66 + 2 * i, 3), dtype=np.uint8) for i in range(4)]
    src = SrgbSource.from_images(ims, list("abcd"), 64)
    on, pinned = DeviceCropper(src, "cpu"), DeviceCropper(src, "cpu", pinned=True)
    assert flat_nbytes(src) == on.flat.nbytes == sum(im.nbytes for im in ims)
    idx = torch.tensor([3, 1, 1, 0])
    a = on.crops(idx, torch.Generator().manual_seed(5))
    b = pinned.crops(idx, torch.Generator().manual_seed(5))
    assert b.dtype == torch.float32 and torch.equal(a, b)


def test_flat_nbytes_of_raw_sets_counts_float32_mosaics():
    items = [Item(f"m{i}", (130 + 2 * i, 132), "RGGB", lambda y, x, h, w: np.zeros((h, w), np.float32))
             for i in range(3)]
    src = RawSource(items, 128)
    assert flat_nbytes(src) == DeviceCropper(src, "cpu").flat.nbytes == 4 * sum((130 + 2 * i) * 132 for i in range(3))


def _train_final(tmp_path, name, **kw):
    from safetensors.torch import load_file

    from n2n_raw.config import TrainConfig
    from n2n_raw.training.loop import train

    said = []
    cfg = TrainConfig(mode="srgb", steps=3, epochs=1, patch_size=64, batch_size=2, default_data_size=3, seed=3,
                      pictures=False, log_every=1, device="cpu", val_every=0, **kw)
    train(cfg, tmp_path / name, log=said.append)
    return load_file(str(sorted((tmp_path / name).glob("ckpt-*.safetensors"))[-1])), said


def test_training_compiles_its_step_without_graph_breaks(tmp_path, monkeypatch):
    """The loop's own step, compiled strictly (--compile on: a graph break or a failure is an error) with the
    aot_eager backend, trains like the eager loop."""
    real = torch.compile
    monkeypatch.setattr(accel.torch, "compile", lambda fn, fullgraph, mode: real(fn, fullgraph=fullgraph,
                                                                               backend="aot_eager"))
    torch._dynamo.reset()
    compiled, said = _train_final(tmp_path, "compiled", compile="on")
    eager, _ = _train_final(tmp_path, "eager", compile="off")
    assert "compiled" in said[0] and not any(s.startswith("warning") for s in said)
    weights = [k for k in eager if k.startswith("model.")]
    assert weights and all(torch.allclose(compiled[k], eager[k], rtol=1e-4, atol=1e-5) for k in weights)


def test_training_in_bf16_on_cpu_when_asked(tmp_path):
    low, said = _train_final(tmp_path, "bf16", precision="bf16")
    ref, _ = _train_final(tmp_path, "fp32", precision="fp32")
    assert "bf16" in said[0]
    weights = [k for k in ref if k.startswith("model.")]
    diff = max((low[k] - ref[k]).abs().max().item() for k in weights)
    assert 0 < diff < 1e-2  # really bf16 (not bitwise fp32), and still the same training


def test_resumed_optimizer_keeps_this_devices_implementation(tmp_path):
    """A checkpoint from a fused (CUDA) Adam resumes into a CPU Adam with the CPU's implementation, and the
    moments come back exactly."""
    from n2n_raw import checkpoint as ckpt

    net, noisy, masks = _loss_setup()
    fused = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    n2n_loss(net, noisy, masks, 0.5)[0].backward()
    fused.step()
    path = ckpt.save_checkpoint(tmp_path, 1, net, fused, {"mode": "srgb"}, 3)
    meta, tensors = ckpt.load_checkpoint(path)
    assert meta["optim_param_groups"][0]["fused"] is True
    plain = torch.optim.Adam(net.parameters(), lr=1e-3)
    ckpt.restore_optimizer(plain, meta, tensors)
    assert not plain.param_groups[0]["fused"]
    for p in net.parameters():
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(plain.state[p][k], fused.state[p][k])


def test_configs_saved_while_compile_was_a_flag_still_load():
    from n2n_raw.config import TrainConfig

    assert TrainConfig.from_dict({"mode": "srgb", "compile": True}).resolved().compile == "on"
    assert TrainConfig.from_dict({"mode": "srgb", "compile": False}).resolved().compile == "off"
    assert TrainConfig.from_dict({"mode": "srgb"}).resolved().compile == "auto"


def test_a_failure_while_recording_cuda_graphs_also_falls_back(monkeypatch):
    """Cudagraph trees record at a later call than the compile: failures in the first calls fall back to
    eager; later ones are real errors and propagate."""
    net, noisy, masks = _loss_setup()
    calls = []

    def fake_compile(fn, fullgraph, mode, fail_at=(2,)):
        def compiled(*args):
            calls.append(1)
            if len(calls) in fail_at:
                raise RuntimeError("recording failed")
            return fn(*args)
        return compiled

    monkeypatch.setattr(accel.torch, "compile", fake_compile)
    said = []
    step = accel.training_step(lambda y, m, g: n2n_loss(net, y, m, g), compiled=True, graphs=True, log=said.append)
    for _ in range(4):
        step(noisy, masks, torch.tensor(0.5))
    assert len(calls) == 2 and len(said) == 1 and "RuntimeError: recording failed" in said[0]

    calls.clear()
    monkeypatch.setattr(accel.torch, "compile", lambda fn, fullgraph, mode: fake_compile(fn, fullgraph, mode, (5,)))
    step = accel.training_step(lambda y, m, g: n2n_loss(net, y, m, g), compiled=True, graphs=True, log=said.append)
    for _ in range(4):
        step(noisy, masks, torch.tensor(0.5))
    with pytest.raises(RuntimeError, match="recording failed"):
        step(noisy, masks, torch.tensor(0.5))
