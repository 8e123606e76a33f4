"""``kdas-lite package CHECKPOINT FOLDER``: a trained model as a Hub-ready folder.

:func:`package_checkpoint` writes the three files of :mod:`kdas_lite.hub`:
``model.safetensors`` (the weights), ``config.json`` (the architecture record, training size
and normalisation) and ``README.md``, a model card in the Hugging Face conventions: YAML front
matter with ``library_name``, ``tags``, ``license`` and a ``model-index`` generated from an
:class:`~kdas_lite.evaluate.EvaluationTable` (one result per test set and metric, each set
named with its label, e.g. ``ETIS-LaribPolypDB (20/196)`` or ``CVC-300 (inferred)``), then the
training data and recipe, the evaluation table and "research use, not a diagnosis".
:func:`model_card` builds the card alone; ``huggingface_hub.ModelCard`` parses its
``model-index`` into ``EvalResult`` entries (a malformed one raises), and
``ModelCard.validate()`` checks it against the Hub's own rules where the Hub is reachable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdas_lite.errors import DataError
from kdas_lite.hub import CONFIG_NAME, PACKAGE_FORMAT, WEIGHTS_NAME

__all__ = ["CARD_METRICS", "model_card", "package_checkpoint"]

CARD_METRICS = {"meanDic": ("dice", "mean Dice"), "meanIoU": ("iou", "mean IoU"),
                "wFm": ("f1", "weighted F-measure"), "Sm": ("accuracy", "S-measure"),
                "MAE": ("mae", "MAE")}
"""The table's metrics the model-index lists: name → (Hub metric type, display name)."""

_NOT_A_DIAGNOSIS = ("**Research use, not a diagnosis.** This model was trained for teaching "
                    "and research; it is not a medical device, has not been validated for "
                    "clinical use, and must not be used to diagnose or treat anyone.")


def _training_text(train_config: dict[str, Any] | None, role: str | None) -> str:
    if not train_config:
        return ("Training data and recipe: not recorded in the checkpoint (e.g. weights "
                "released by others).")
    keys = ("epochs", "image_size", "batch_size", "lr", "optimizer", "multi_scale",
            "max_train_images", "use_at", "use_sgm", "alpha", "temperature", "seed")
    recipe = ", ".join(f"{k}={train_config[k]}" for k in keys if k in train_config)
    distilled = role == "student"
    what = ("distilled from a teacher with KDAS (attention + SGM losses, Eq. 6)" if distilled
            else "trained alone on the segmentation loss (no distillation)")
    return (f"Training data: the PraNet training split (TrainDataset: 900 Kvasir-SEG + 550 "
            f"CVC-ClinicDB images; no test image), at most {train_config.get('max_train_images')}"
            f" of them. The model was {what}. Recipe (kdas_lite TrainConfig): {recipe}.")


def model_card(table: Any, arch: dict[str, Any], *, model_name: str,
               train_config: dict[str, Any] | None = None, role: str | None = None,
               image_size: int | None = None, repo_id: str | None = None) -> str:
    """The model card (``README.md``) for a model and its evaluation table.

    Args:
        table: an :class:`~kdas_lite.evaluate.EvaluationTable` (one row per test set).
        arch: the architecture record.
        model_name: the card's title and the model-index name.
        train_config: the run's ``TrainConfig.to_dict()`` (None: unknown).
        role: ``"teacher"`` or ``"student"`` (which loss it was trained with).
        image_size: the size it was trained at.
        repo_id: the Hub repository, if known (shown in the usage line).

    Returns:
        The card's text: YAML front matter with the ``model-index``, then Markdown.
    """
    import yaml

    results = []
    for dataset in table.rows:
        label = table.label(dataset)
        metrics = [{"type": kind, "name": f"{shown} ({label})",
                    "value": round(float(table.rows[dataset][key]), 4)}
                   for key, (kind, shown) in CARD_METRICS.items()]
        results.append({"task": {"type": "image-segmentation",
                                 "name": "Polyp segmentation"},
                        "dataset": {"type": dataset.lower(), "name": label,
                                    "split": "test"},
                        "metrics": metrics})
    front = {"library_name": "kdas-lite", "license": "mit",
             "tags": ["image-segmentation", "medical-imaging", "polyp-segmentation",
                      "knowledge-distillation", "kdas", "safetensors"],
             "pipeline_tag": "image-segmentation",
             "model-index": [{"name": model_name, "results": results}]}
    notes = "\n".join(f"- {note}" for note in table.notes())
    ref = repo_id or "FOLDER"
    body = f"""# {model_name}

Polyp-PVT ({arch.get('encoder')}, decoder width {arch.get('channel')}) for polyp segmentation,
from kdas_lite, a teaching package for KDAS (knowledge distillation via attention supervision,
ICME 2024). Input {image_size or 352}×{image_size or 352} px RGB, normalised with the
encoder's mean and std (config.json); output two logit maps, mask = sigmoid(P1 + P2) ≥ 0.5.

{_NOT_A_DIAGNOSIS}

## Training

{_training_text(train_config, role)}

## Evaluation

The PraNet test sets, scored by `kdas-lite evaluate` at {table.size} px (no test image was
trained on, used for model selection or for calibration):

{table.to_markdown()}
{notes and chr(10) + "Subset labels:" + chr(10) + notes + chr(10)}
## Use

```bash
pip install kdas-lite
kdas-lite predict {ref} frames/ --output predictions/   # or a video file
kdas-lite evaluate {ref} --data DATA
```

Weights: `{WEIGHTS_NAME}` (safetensors: loading never unpickles anything); architecture:
`{CONFIG_NAME}`.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" \
        + body


def package_checkpoint(checkpoint: str | os.PathLike[str], folder: str | os.PathLike[str],
                       table: Any, *, overwrite: bool = False,
                       repo_id: str | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` for a checkpoint.

    Args:
        checkpoint: a kdas_lite checkpoint (``best.pth``) or the authors' plain state dict.
        folder: the package folder (created; must be new or empty unless ``overwrite``
            and it holds only a previous package's three files).
        table: its :class:`~kdas_lite.evaluate.EvaluationTable` on the test sets.
        repo_id: the Hub repository it will be uploaded to (shown in the card).

    Returns:
        The folder.

    Raises:
        DataError: the folder holds other files (never replaced), or a package without
            ``overwrite``.
        CheckpointError: the checkpoint cannot be loaded.
    """
    from huggingface_hub import ModelCard
    from safetensors.torch import save_file

    from kdas_lite.checkpoint_files import load_checkpoint
    from kdas_lite.runs import load_trained, trained_image_size

    folder = Path(folder)
    ours = {WEIGHTS_NAME, CONFIG_NAME, "README.md"}
    if folder.exists():
        if not folder.is_dir():
            raise DataError(f"{folder} is a file; choose a folder for the package")
        present = {p.name for p in folder.iterdir()}
        if present - ours or (present and not _is_package_config(folder / CONFIG_NAME)):
            raise DataError(f"{folder} holds files kdas-lite package did not write (e.g. "
                            f"{sorted(present - ours or present)[0]}); choose a new folder")
        if present and not overwrite:
            raise DataError(f"{folder} already holds a package; pass --overwrite to replace it")
    model = load_trained(checkpoint)
    size = trained_image_size(checkpoint)
    state = load_checkpoint(checkpoint)
    train_config = state.get("train_config") if isinstance(state, dict) else None
    role = state.get("role") if isinstance(state, dict) else None
    del state
    arch = model.config()
    name = f"kdas-lite {role or 'model'} {arch['encoder']}"
    card = ModelCard(model_card(table, arch, model_name=name, train_config=train_config,
                                role=role, image_size=size, repo_id=repo_id))
    if len(card.data.eval_results or ()) != len(table.rows) * len(CARD_METRICS):
        raise DataError(f"the model card's model-index does not list every result of "
                        f"{len(table.rows)} test set(s); report this")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    config = {"format": PACKAGE_FORMAT, "arch": arch, "image_size": size,
              "input_mean": list(model.input_mean), "input_std": list(model.input_std),
              "role": role, "threshold": 0.5}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    card.save(folder / "README.md")
    return folder


def _is_package_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == PACKAGE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False

