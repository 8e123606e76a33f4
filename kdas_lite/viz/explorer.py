"""The interactive teacher/student attention explorer (ipywidgets)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

from kdas_lite.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_resize,
    read_image,
    read_mask,
)
from kdas_lite.losses import attention_target
from kdas_lite.models import (
    EncoderAttention,
    PolypPVTOutput,
    attention_to_image,
    encoder_attention_maps,
)
from kdas_lite.viz._common import (
    DIFF_CMAP,
    GT_COLOR,
    MAP_CMAP,
    _extent,
    _resize,
    _subplots,
    _suptitle,
    to_map,
    to_rgb,
)
from kdas_lite.viz.attention import _draw_map, _mark_query, _query_cell, _spatial_softmax

# ---------------------------------------------------------------------------------------------
# The interactive explorer
# ---------------------------------------------------------------------------------------------
MAP_KINDS: tuple[str, ...] = (
    "encoder attention: query point",
    "encoder attention: mean over queries",
    "decoder spatial attention",
    "output probability",
    "L_AT distribution",
)
"""What :class:`AttentionExplorer` can show. The L_AT distribution is the target
``q = softmax_HW(A_t/T)`` for the teacher and ``p = softmax_HW(P_s/T)`` for the student
(both from P2): the two distributions that L_AT matches."""

SOURCES: tuple[str, ...] = ("teacher", "student", "difference")
"""Whose map :class:`AttentionExplorer` shows; ``difference`` is teacher − student."""

_ENCODER_KINDS = MAP_KINDS[:2]


@dataclass
class _ModelMaps:
    """Everything one model computed for one image (CPU, detached)."""

    output: PolypPVTOutput
    encoder: list[EncoderAttention] | None


def _load_rgb(image: str | os.PathLike[str] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    rgb = to_rgb(image)
    return np.round(rgb * 255).astype(np.uint8)


def _load_mask(mask: str | os.PathLike[str] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask)
    return to_map(mask) > 0.5


class AttentionExplorer:
    """Explore teacher and student attention, image by image (ipywidgets, or a static figure).

    The controls: an image picker, the map kind (:data:`MAP_KINDS`), the source
    (:data:`SOURCES`: teacher, student or their difference), the encoder stage (1–4) and head
    (or the mean of the heads), the query point (y, x as fractions of the image) for encoder
    attention, and the overlay opacity. Maps are computed with the models in eval mode when an
    image is first needed (the first image when the explorer is created) and cached per image.

    Works in JupyterLab and Colab (ipywidgets 8; on Colab call
    ``google.colab.output.enable_custom_widget_manager()`` first). The figure is rendered to a
    PNG inside an ``ipywidgets.Image``, so it needs no interactive matplotlib backend. Where
    widgets are not rendered (a static HTML copy, nbviewer, a terminal) use
    :meth:`static_figure`.

    Example::

        explorer = AttentionExplorer(teacher, student, image_paths, mask_paths, image_size=352)
        explorer.show()                  # the widget
        explorer.static_figure()         # the same maps as one figure, for static copies

    Args:
        teacher, student: Polyp-PVT models (encoder attention needs ``pvt_v2_*`` encoders in
            both; otherwise only the decoder/output kinds are offered).
        images: image paths, ``uint8 (H, W, 3)`` arrays or ``(3, H, W)`` tensors in [0, 1].
        masks: optional matching mask paths or ``(H, W)`` arrays (drawn as contours).
        names: labels for the picker (default: file stems, or "image i").
        image_size: side the models run at (a multiple of 32).
        temperature: T of the L_AT distributions.
        block: which block of each encoder stage (-1: the last).
        dpi: resolution of the rendered widget figure.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module,
                 images: Sequence[str | os.PathLike[str] | np.ndarray | Tensor],
                 masks: Sequence[str | os.PathLike[str] | np.ndarray | Tensor] | None = None,
                 names: Sequence[str] | None = None, *, image_size: int = 352,
                 temperature: float = 2.0, block: int = -1, dpi: int = 90) -> None:
        if not images:
            raise ValueError("AttentionExplorer needs at least one image")
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.models = {"teacher": teacher, "student": student}
        self.images = list(images)
        self.masks = None if masks is None else list(masks)
        self.names = list(names) if names is not None else [
            Path(im).stem if isinstance(im, (str, os.PathLike)) else f"image {i}"
            for i, im in enumerate(self.images)]
        if len(self.names) != len(self.images):
            raise ValueError(f"got {len(self.images)} images but {len(self.names)} names")
        self.image_size = image_size
        self.temperature = temperature
        self.block = block
        self.dpi = dpi
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, dict[str, _ModelMaps]]] = {}
        self.kinds = MAP_KINDS if self._has_encoder_attention() else MAP_KINDS[2:]
        self.widget: Any = None
        self.figure: Figure | None = None
        self.controls: dict[str, Any] = {}

    # ------------------------------------------------------------------ computing maps
    def _has_encoder_attention(self) -> bool:
        _, _, maps = self._compute(0)
        return all(m.encoder is not None for m in maps.values())

    def _compute(self, index: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, _ModelMaps]]:
        """The resized image, mask and both models' maps for image ``index`` (cached)."""
        if index not in self._cache:
            image = _load_rgb(self.images[index])
            mask = None if self.masks is None else _load_mask(self.masks[index])
            resize = build_resize(self.image_size)
            if mask is None:
                image = resize(image=image)["image"]
            else:
                out = resize(image=image, mask=mask.astype(np.uint8))
                image, mask = out["image"], out["mask"].astype(bool)
            maps = {role: self._run(model, image) for role, model in self.models.items()}
            self._cache[index] = (image, mask, maps)
        return self._cache[index]

    def _run(self, model: nn.Module, image: np.ndarray) -> _ModelMaps:
        mean = torch.tensor(getattr(model, "input_mean", IMAGENET_MEAN)).view(3, 1, 1)
        std = torch.tensor(getattr(model, "input_std", IMAGENET_STD)).view(3, 1, 1)
        x = (torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255 - mean) / std
        x = x[None].to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(x, return_features=True)
            try:
                encoder = encoder_attention_maps(model, x, block=self.block)
            except ValueError:  # no self-attention in this encoder (e.g. EfficientNet-Lite)
                encoder = None
        finally:
            model.train(was_training)
        out = PolypPVTOutput(**{k: ([t.detach().cpu() for t in v] if isinstance(v, list)
                                    else v.detach().cpu()) for k, v in vars(out).items()})
        if encoder is not None:
            for att in encoder:
                att.attention = att.attention.cpu()
        return _ModelMaps(out, encoder)

    def heads(self, stage: int) -> int:
        """Heads available at ``stage`` in both models (1..4)."""
        _, _, maps = self._compute(0)
        if any(m.encoder is None for m in maps.values()):
            return 0
        return min(m.encoder[stage - 1].attention.shape[1] for m in maps.values())

    @property
    def stages(self) -> int:
        """Number of encoder stages with attention (0 without encoder attention)."""
        _, _, maps = self._compute(0)
        return 0 if maps["teacher"].encoder is None else len(maps["teacher"].encoder)

    def _role_map(self, role: str, maps: _ModelMaps, kind: str, stage: int,
                  head: int | None, query: tuple[float, float]) -> np.ndarray:
        if kind in _ENCODER_KINDS:
            if maps.encoder is None:
                raise ValueError(f"the {role}'s encoder has no attention maps")
            att = maps.encoder[stage - 1]
            cell = _query_cell(query, att.query_grid) if kind == MAP_KINDS[0] else None
            return attention_to_image(att, cell, head)[0].numpy()
        out = maps.output
        if kind == "decoder spatial attention":
            return to_map(out.spatial_attention[0])
        if kind == "output probability":
            return to_map(torch.sigmoid(out.p2[0]))
        if kind == "L_AT distribution":
            p2 = out.p2[:1].float()
            source = attention_target(p2) if role == "teacher" else p2
            return _spatial_softmax(source, self.temperature)
        raise ValueError(f"unknown map kind {kind!r}; choose one of {self.kinds}")

    def compute_map(self, index: int = 0, source: str = "teacher",
                    kind: str = "output probability", stage: int = 1, head: int | None = None,
                    query: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
        """One map as shown by the explorer.

        Args:
            index: image index.
            source: ``"teacher"``, ``"student"`` or ``"difference"`` (teacher − student, the
                student's map resized to the teacher's when they differ).
            kind: one of :attr:`kinds`.
            stage, head, query: for the encoder kinds: stage 1–4, head index or None for the
                mean of the heads, query ``(y, x)`` in [0, 1].

        Returns:
            The ``(h, w)`` map: the key grid for encoder attention, stride 4 for the spatial
            attention, the input size otherwise.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        _, _, maps = self._compute(index)
        if source != "difference":
            return self._role_map(source, maps[source], kind, stage, head, query)
        t = self._role_map("teacher", maps["teacher"], kind, stage, head, query)
        s = self._role_map("student", maps["student"], kind, stage, head, query)
        return t - _resize(s, t.shape, nearest=kind in _ENCODER_KINDS)

    # ------------------------------------------------------------------ static figure
    def static_figure(self, index: int = 0, stage: int | None = None,
                      query: tuple[float, float] = (0.5, 0.5), alpha: float = 0.6,
                      title: str | None = None) -> Figure:
        """Every map kind (columns) for teacher, student and difference (rows), one image.

        The fallback where widgets cannot be shown; encoder attention is the mean of the heads
        at ``stage`` (default: the last stage). ``title`` goes before the image's name (e.g.
        the data set).
        """
        image, mask, _ = self._compute(index)
        rgb = to_rgb(image)
        stage = stage or max(self.stages, 1)
        fig, axes = _subplots(len(SOURCES), len(self.kinds), (2.3, 2.3))
        for c, kind in enumerate(self.kinds):
            for r, source in enumerate(SOURCES):
                ax = axes[r, c]
                m = self.compute_map(index, source, kind, stage, None, query)
                artist = self._style(ax, rgb, m, kind, source, alpha)
                colorbar = fig.colorbar(artist, ax=ax, shrink=0.7)
                colorbar.ax.tick_params(labelsize=6)
                if mask is not None and mask.any() and not mask.all():
                    ax.contour(mask, levels=[0.5], colors=[GT_COLOR], linewidths=0.8)
                if kind == MAP_KINDS[0]:
                    _mark_query(ax, query, rgb.shape)
                short = kind.replace("encoder attention: ", f"stage {stage} ")
                ax.set_title(f"{source}\n{short}", fontsize=7)
        _suptitle(fig, title, f"{self.names[index]}: teacher vs student maps")
        return fig

    @staticmethod
    def _style(ax: Axes, rgb: np.ndarray, m: np.ndarray, kind: str, source: str,
               alpha: float) -> Any:
        if source == "difference":
            bound = float(np.abs(m).max()) or 1.0
            return _draw_map(ax, rgb, m, alpha=alpha, cmap=DIFF_CMAP, vmin=-bound, vmax=bound,
                             nearest=kind in _ENCODER_KINDS)
        vmax = 1.0 if kind in ("output probability", "decoder spatial attention") else (
            float(m.max()) or 1.0)
        return _draw_map(ax, rgb, m, alpha=alpha, cmap=MAP_CMAP, vmin=0.0, vmax=vmax,
                         nearest=kind in _ENCODER_KINDS)

    # ------------------------------------------------------------------ widgets
    def build(self) -> Any:
        """Create the widget (an ``ipywidgets.VBox``); :meth:`show` calls this."""
        import ipywidgets as w

        stages = self.stages
        c = self.controls = {
            "image": w.Dropdown(options=[(n, i) for i, n in enumerate(self.names)], value=0,
                                description="image"),
            "kind": w.Dropdown(options=list(self.kinds), value=self.kinds[0],
                               description="map", layout=w.Layout(width="360px")),
            "source": w.ToggleButtons(options=list(SOURCES), value="teacher",
                                      description="source"),
            "stage": w.ToggleButtons(options=[(str(s), s) for s in range(1, stages + 1)] or
                                     [("—", 1)], value=max(stages, 1), description="stage"),
            "head": w.Dropdown(description="head"),
            "query_y": w.FloatSlider(0.5, min=0.0, max=1.0, step=0.01, description="query y"),
            "query_x": w.FloatSlider(0.5, min=0.0, max=1.0, step=0.01, description="query x"),
            "opacity": w.FloatSlider(0.6, min=0.0, max=1.0, step=0.05, description="opacity"),
        }
        for control in c.values():
            control.style.description_width = "initial"
        self._set_head_options()
        self._image_widget = w.Image(format="png")
        self._info = w.HTML()
        self._build_figure()
        c["stage"].observe(lambda _: self._set_head_options(), names="value")
        for control in c.values():
            control.observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([
            w.HBox([c["image"], c["kind"]]),
            w.HBox([c["source"]]),
            w.HBox([c["stage"], c["head"]]),
            w.HBox([c["query_y"], c["query_x"], c["opacity"]]),
            self._image_widget,
            self._info,
        ])
        self.update()
        return self.widget

    def _set_head_options(self) -> None:
        heads = self.heads(self.controls["stage"].value) if self.stages else 0
        head = self.controls["head"]
        old = head.value
        options = [("mean of heads", -1), *((f"head {h + 1}", h) for h in range(heads))]
        head.options = options
        head.value = old if old is not None and old < heads else -1

    def _build_figure(self) -> None:
        fig, axes = _subplots(1, 2, (3.6, 3.6))
        image, _, _ = self._compute(0)
        rgb = to_rgb(image)
        self._base_artists = [axes[0, 0].imshow(rgb), axes[0, 1].imshow(rgb)]
        axes[0, 0].set_title("image (cyan: ground truth)", fontsize=9)
        axes[0, 0].set_axis_off()
        self._map_artist = axes[0, 1].imshow(np.zeros((2, 2)), cmap=MAP_CMAP, vmin=0, vmax=1,
                                             extent=_extent(rgb.shape))
        axes[0, 1].set_axis_off()
        fig.colorbar(self._map_artist, ax=axes[0, 1], shrink=0.8)
        self._query_markers = [ax.plot([], [], marker="+", color="cyan", ms=14, mew=2.5)[0]
                               for ax in axes[0]]
        self._contours: list[Any] = []
        self.figure, self._axes = fig, axes

    def state(self) -> dict[str, Any]:
        """The current selection (from the widgets)."""
        c = self.controls
        head = c["head"].value
        return {"index": c["image"].value, "kind": c["kind"].value,
                "source": c["source"].value, "stage": c["stage"].value,
                "head": None if head is None or head < 0 else head,
                "query": (c["query_y"].value, c["query_x"].value),
                "opacity": c["opacity"].value}

    @property
    def map_artist(self) -> Any:
        """The ``AxesImage`` holding the displayed map (its array changes with the controls)."""
        return self._map_artist

    @property
    def png(self) -> bytes:
        """The PNG currently shown by the widget."""
        return bytes(self._image_widget.value)

    def update(self) -> None:
        """Redraw the figure for the current control values and push it into the widget."""
        s = self.state()
        encoder = s["kind"] in _ENCODER_KINDS
        for name in ("stage", "head", "query_y", "query_x"):
            self.controls[name].disabled = not encoder or (
                name.startswith("query") and s["kind"] != MAP_KINDS[0])
        image, mask, _ = self._compute(s["index"])
        rgb = to_rgb(image)
        m = self.compute_map(s["index"], s["source"], s["kind"], s["stage"], s["head"],
                             s["query"])
        for artist in self._base_artists:
            artist.set_data(rgb)
        for contour in self._contours:
            contour.remove()
        self._contours = []
        if mask is not None and mask.any() and not mask.all():
            self._contours.append(self._axes[0, 0].contour(mask, levels=[0.5],
                                                           colors=[GT_COLOR], linewidths=1.2))
        artist = self._map_artist
        artist.set_data(m)
        artist.set_extent(_extent(rgb.shape))
        artist.set_alpha(s["opacity"])
        artist.set_interpolation("nearest" if encoder else "bilinear")
        if s["source"] == "difference":
            bound = float(np.abs(m).max()) or 1.0
            artist.set_cmap(DIFF_CMAP)
            artist.set_clim(-bound, bound)
        else:
            artist.set_cmap(MAP_CMAP)
            fixed = s["kind"] in ("output probability", "decoder spatial attention")
            artist.set_clim(0.0, 1.0 if fixed else float(m.max()) or 1.0)
        y, x = s["query"]
        point = ([x * (rgb.shape[1] - 1)], [y * (rgb.shape[0] - 1)])
        for marker in self._query_markers:
            marker.set_data(*(point if s["kind"] == MAP_KINDS[0] else ([], [])))
        detail = ""
        if encoder:
            head = "mean of heads" if s["head"] is None else f"head {s['head'] + 1}"
            detail = f" · stage {s['stage']} · {head}"
        self._axes[0, 1].set_title(f"{s['source']}: {s['kind']}{detail}", fontsize=9)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi)
        self._image_widget.value = buffer.getvalue()
        self._info.value = self._describe(s, m)

    def _describe(self, s: dict[str, Any], m: np.ndarray) -> str:
        text = f"<small>{self.names[s['index']]} · map {m.shape[0]}×{m.shape[1]}"
        if s["kind"] in _ENCODER_KINDS:
            _, _, maps = self._compute(s["index"])
            att = maps["teacher"].encoder[s["stage"] - 1]
            text += (f" · queries {att.query_grid[0]}×{att.query_grid[1]}, keys "
                     f"{att.key_grid[0]}×{att.key_grid[1]} (spatial reduction)")
        return text + f" · range [{m.min():.3g}, {m.max():.3g}]</small>"

    def show(self) -> None:
        """Display the widget; without a widget frontend, display :meth:`static_figure`."""
        from IPython.display import display

        try:
            widget = self.widget or self.build()
        except ImportError:  # ipywidgets missing: the static figure says the same
            display(self.static_figure())
            return
        display(widget)
