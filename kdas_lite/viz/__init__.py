"""Figures and the interactive teacher/student attention explorer.

Every figure function takes tensors or arrays and returns a matplotlib ``Figure``: nothing is
shown from here (no ``plt.show``). In Jupyter the returned figure displays once, as the value
of the cell; in a script call ``fig.savefig(...)``. The figures, by notebook:

- data and losses: :func:`overlay`, :func:`overlay_grid`, :func:`boundary_weight_figure`
  (the structure loss's boundary weights, paper Eq. 1);
- architecture: :func:`parameter_counts`, :func:`parameter_table` (teacher vs student per
  block: encoder / CIM / CFM / SAM / heads);
- attention: :func:`encoder_attention_figure` (PVTv2 spatial-reduction attention per stage and
  head), :func:`decoder_attention_figure` (the CIM's channel and spatial attention),
  :func:`attention_target_figure` (the L_AT self-attention target of paper Eq. 2 vs the raw
  teacher map), :func:`compare_maps_figure` (teacher | student | difference) and the
  interactive :class:`AttentionExplorer` with its :meth:`~AttentionExplorer.static_figure`;
- L_SGM: :func:`matrices_figure`, :func:`sgm_figure` (P, Pᵀ, P + Pᵀ, pooled; paper Eqs. 4–5);
- training and results: :func:`plot_history` (one run's loss terms and validation Dice),
  :func:`training_curves_figure`, :func:`ablation_figure` (with seeds: paired differences),
  :func:`ablation_vs_lab_figure` (a run beside a committed multi-seed lab),
  :func:`term_gradient_figure` (each loss term's gradient on the student),
  :func:`results_figure`, :func:`tradeoff_figure`, :func:`predict_test_set` +
  :func:`best_worst_figure`;
- deploying the student (notebook 06): :func:`deploy_figure` (frames/s and mDice of its
  PyTorch, ONNX and INT8 forms), :func:`video_figure` (an overlaid clip and its polyp area);
- the verdict of notebook 04: :func:`forest_figure` (every lab row's paired Δ, Holm-adjusted),
  :func:`sgm_forms_figure` (L_SGM's logit and σ(P) forms, the polyp + L_SGM loses).

One submodule per topic, everything re-exported here (``from kdas_lite import viz``):
:mod:`~kdas_lite.viz.images`, :mod:`~kdas_lite.viz.architecture`,
:mod:`~kdas_lite.viz.attention`, :mod:`~kdas_lite.viz.sgm`, :mod:`~kdas_lite.viz.results`,
:mod:`~kdas_lite.viz.explorer`, :mod:`~kdas_lite.viz.verdict`, :mod:`~kdas_lite.viz.deploy`;
shared helpers (array conversion, colours) in ``kdas_lite.viz._common``. Every figure draws a
method in the same colour (:data:`METHOD_COLORS`, :func:`method_color`), signed values on the
diverging :data:`DIFF_CMAP` around 0, and maps with a colour bar; figures of data take a
``title`` for the data set.

Images may be given as ``uint8 (H, W, 3)`` arrays (as :func:`kdas_lite.data.read_image` returns)
or as model-input tensors ``(3, H, W)`` / ``(1, 3, H, W)`` together with the ``mean``/``std``
that normalised them (``model.input_mean`` / ``model.input_std``). Maps may be any ``(H, W)``
array or tensor with leading singleton dimensions, e.g. ``(1, 1, H, W)``; they are resized to the
image they are drawn on.
"""


from kdas_lite.viz._common import (
    DIFF_CMAP,
    GT_COLOR,
    MAP_CMAP,
    METHOD_COLORS,
    PRED_COLOR,
    method_color,
    to_map,
    to_rgb,
)
from kdas_lite.viz.architecture import BLOCKS, parameter_counts, parameter_table
from kdas_lite.viz.attention import (
    attention_target_figure,
    compare_maps_figure,
    decoder_attention_figure,
    encoder_attention_figure,
)
from kdas_lite.viz.deploy import deploy_figure, video_figure
from kdas_lite.viz.explorer import MAP_KINDS, SOURCES, AttentionExplorer
from kdas_lite.viz.images import boundary_weight_figure, overlay, overlay_grid
from kdas_lite.viz.results import (
    ablation_figure,
    ablation_vs_lab_figure,
    best_worst_figure,
    budget_sweep_figure,
    plot_history,
    predict_test_set,
    results_figure,
    term_gradient_figure,
    tradeoff_figure,
    training_curves_figure,
    transfer_figure,
)
from kdas_lite.viz.sgm import matrices_figure, sgm_figure
from kdas_lite.viz.verdict import forest_figure, sgm_forms_figure

__all__ = [
    "BLOCKS",
    "DIFF_CMAP",
    "GT_COLOR",
    "MAP_CMAP",
    "MAP_KINDS",
    "METHOD_COLORS",
    "PRED_COLOR",
    "SOURCES",
    "AttentionExplorer",
    "ablation_figure",
    "ablation_vs_lab_figure",
    "attention_target_figure",
    "best_worst_figure",
    "boundary_weight_figure",
    "budget_sweep_figure",
    "compare_maps_figure",
    "decoder_attention_figure",
    "deploy_figure",
    "encoder_attention_figure",
    "forest_figure",
    "matrices_figure",
    "method_color",
    "overlay",
    "overlay_grid",
    "parameter_counts",
    "parameter_table",
    "plot_history",
    "predict_test_set",
    "results_figure",
    "sgm_figure",
    "sgm_forms_figure",
    "term_gradient_figure",
    "to_map",
    "to_rgb",
    "tradeoff_figure",
    "training_curves_figure",
    "transfer_figure",
    "video_figure",
]
