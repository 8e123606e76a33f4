"""The standard polyp-segmentation evaluation protocol (PraNet / UACANet / Polyp-PVT / KDAS).

Every number in the polyp papers' tables comes from the same recipe, first published with
PraNet's MATLAB toolbox (``eval/main.m``, Fan et al., MICCAI 2020) and ported to Python by
UACANet (``utils/eval_functions.py``). This package re-implements it, vectorised.

Use :func:`evaluate_maps` for a list of maps (or :class:`MetricAccumulator` to stream them),
:func:`score_map` / :func:`threshold_curves` / :func:`s_measure` / :func:`weighted_f_measure`
for one image, and :func:`batch_dice` for the quick Dice that training validates with.
:mod:`kdas_lite.evaluate` runs a model over the test sets and calls this package.

One submodule per concept, every public name re-exported here; imports point one way,
``_common`` ← the three measures ← ``scoring``:

- ``kdas_lite.metrics._common``: :data:`THRESHOLDS`, :data:`METRIC_NAMES`,
  :data:`CURVE_NAMES` and the input checks every measure shares;
- :mod:`~kdas_lite.metrics.thresholded`: Dice, IoU, Sen, Spe and E-measure at the 256
  thresholds (:func:`threshold_curves`);
- :mod:`~kdas_lite.metrics.structure`: the S-measure (:func:`s_measure`);
- :mod:`~kdas_lite.metrics.weighted_f`: the weighted F-measure (:func:`weighted_f_measure`);
- :mod:`~kdas_lite.metrics.scoring`: every measure of one image and the dataset averages
  (:func:`score_map`, :class:`MetricAccumulator`, :func:`evaluate_maps`,
  :func:`default_workers`);
- :mod:`~kdas_lite.metrics.validation`: :func:`batch_dice`, training's per-epoch Dice.

Inputs
------
For each test image, a **soft prediction map** ``S`` ∈ [0, 1]^{H×W} (the model's probability
map, already resized to the mask's original size H×W) and the **ground-truth mask**
``G`` ∈ {0, 1}^{H×W}. ``N = H·W`` pixels, ``|G|`` foreground pixels.

Thresholded measures (256 thresholds)
-------------------------------------
The map is binarised at each of the 256 thresholds ``t ∈ THRESHOLDS = linspace(1, 0, 256)``
(1, 254/255, …, 1/255, 0) as ``M_t = [S ≥ t]``. With the confusion counts
``TP = |M_t ∩ G|``, ``FP = |M_t \\ G|``, ``FN = |G \\ M_t|``, ``TN = N − TP − FP − FN``:

- Dice          ``Dic(t) = 2·TP / (2·TP + FP + FN)``
- IoU           ``IoU(t) = TP / (TP + FP + FN)``
- sensitivity   ``Sen(t) = TP / (TP + FN)``
- specificity   ``Spe(t) = TN / (TN + FP)``
- E-measure (Fan et al., IJCAI 2018). Centre the binary map and the mask on their means,
  ``φ_M = M_t − mean(M_t)``, ``φ_G = G − mean(G)``; per pixel the *alignment*
  ``ξ = 2·φ_G·φ_M / (φ_G² + φ_M² + eps)`` and the *enhanced alignment*
  ``(ξ + 1)² / 4``; then ``Em(t) = Σ_pixels (ξ + 1)²/4 / (N − 1 + eps)``.
  (``|G| = 0``: the enhanced matrix is ``1 − M_t``; ``|G| = N``: it is ``M_t``.)

**Protocol convention** (``Fmeasure_calu``): when ``TP = 0`` *all four* of Dic, IoU, Sen and
**Spe** are 0 — specificity included, although ``TN / (TN + FP)`` may be close to 1 there.

No loop over thresholds is needed: a pixel is positive at threshold ``t_j`` iff ``S ≥ t_j``,
so one histogram of "first threshold at which each pixel turns on" split by ``G``, followed by
a cumulative sum, gives TP and FP at all 256 thresholds at once; every curve above is then a
closed-form function of ``(TP, FP, |G|, N)`` — E-measure included, because a binary map and a
binary mask take only four value pairs (one per confusion cell).

Per dataset the curves are averaged over the images (one curve per measure), and

    meanDic = mean_t(mean_images Dic(t)),   maxDic = max_t(mean_images Dic(t))

and likewise meanIoU/maxIoU, meanEm/maxEm, meanSen, meanSpe. Note that the dataset *max* is the
maximum of the averaged curve (one threshold for the whole dataset), not the average of
per-image maxima. The thresholds include ``t = 0`` where every pixel is positive, so even a
perfect binary map has ``meanDic = (255 + 2|G|/(|G| + N)) / 256 < 1`` (its ``maxDic`` is 1).

Threshold-free measures
-----------------------
- **MAE** ``= (1/N) Σ |S − G|``.
- **S-measure** (Fan et al., ICCV 2017), ``Sm = α·S_o + (1 − α)·S_r`` with ``α = 0.5``,
  clipped at 0; ``Sm = 1 − mean(S)`` if ``|G| = 0`` and ``mean(S)`` if ``|G| = N``.

  * object score: for a set of values ``x``, ``O(x) = 2·x̄ / (x̄² + 1 + σ_x + eps)``
    (``σ`` the sample standard deviation, N−1 normalised as MATLAB's ``std``);
    ``S_o = μ·O(S[G]) + (1 − μ)·O(1 − S[¬G])`` with ``μ = |G|/N``.
  * region score: split the image at the foreground centroid ``(X, Y)`` (1-based, MATLAB
    ``round``) into four blocks; per block an SSIM-like score
    ``Q = 4·x̄·ȳ·σ_xy / ((x̄² + ȳ²)(σ_x² + σ_y²) + eps)`` (1 if numerator and denominator are
    both 0, 0 if only the numerator is), weighted by the block's share of the area.
- **weighted F-measure** wFm (Margolin et al., CVPR 2014), β² = 1:

  * ``E = |S − G|``; background pixels take the error of their nearest foreground pixel
    (Euclidean distance transform), giving ``E_t``;
  * ``E_A = E_t ⊛ K`` with ``K`` the 7×7 Gaussian of σ = 5 (MATLAB ``fspecial``), zero
    padding; inside ``G`` the error becomes ``min(E, E_A)`` (pixel *dependency*);
  * background errors are weighted by ``B = 2 − exp(ln(0.5)/5 · d)`` with ``d`` the distance to
    ``G`` (pixel *importance*): ``E_w = min(E, E_A)·B``;
  * ``TP_w = |G| − Σ_G E_w``, ``FP_w = Σ_{¬G} E_w``, ``R_w = 1 − mean_G(E_w)``,
    ``P_w = TP_w / (eps + TP_w + FP_w)``, ``wFm = (1 + β²)·R_w·P_w / (eps + R_w + β²·P_w)``.

``eps`` is MATLAB's ``eps`` = 2.2204e-16 everywhere, as in the reference code.

Conventions and known differences
---------------------------------
- **Ties.** ``≥`` is used at every threshold, for E-measure too, as in UACANet's port and in
  pysodmetrics. PraNet's original ``main.m`` binarises the E-measure map with ``>`` (only there);
  the two differ only for pixels *exactly* equal to a threshold — common for 8-bit PNG maps
  (values k/255), essentially absent for the float maps :mod:`kdas_lite.evaluate` scores.
- **Float vs 8-bit maps.** The reference pipelines save maps as 8-bit PNGs and re-read them;
  we score float maps directly. pysodmetrics quantises ``floor(255·S)`` before histogramming,
  which gives the same binary maps except for values within rounding error of ``k/255``.
- **S-measure.** The block split uses MATLAB's rounding (half away from zero); pysodmetrics'
  ``np.round`` rounds halves to even, so the two differ when the foreground centroid lies
  exactly on a half pixel. UACANet's port uses the population std (``ddof=0``) in the object
  score and splits without MATLAB's +1 offset; we follow the MATLAB original. A block of zero
  area (centroid on the last row/column) contributes 0 instead of MATLAB's NaN.
- **wFm.** The separable Gaussian filter equals MATLAB's 7×7 ``imfilter`` up to rounding; when
  several foreground pixels are equally near a background pixel, we take the one SciPy's
  feature transform takes (smallest column, then smallest row), and MATLAB's ``bwdist`` may
  pick another. ``B`` counts as 2 from ``d = 200`` on (``2 − B ≤ 2^-40`` there; wFm moves by
  less than 10^-12 of itself). UACANet's port pads with ``nearest`` instead of zeros; we
  follow MATLAB. ``wFm = 0`` for an empty mask (pysodmetrics' convention; MATLAB gives NaN).
- **Empty mask, empty prediction.** With ``|G| = 0`` there is never a true positive, so Dice,
  IoU, Sen and Spe are 0 at every threshold (no "1 for empty vs empty"); Sm = 1 − mean(S),
  Em(t) = (pixels predicted background) / (N − 1), MAE = mean(S), wFm = 0. The five public
  test sets have no empty masks. With ``|G| = N`` (no negatives) Spe is 0 (MATLAB: NaN).
- **Em range.** Because of the ``N − 1`` denominator a perfect map scores up to
  ``N / (N − 1)``, slightly above 1; all other measures lie in [0, 1].

Cross-check: ``tests/test_metrics.py`` compares every measure with pysodmetrics 1.6.2 (and the
threshold curves with a literal per-threshold loop); they agree to 1e-10 on float maps once the
conventions above are accounted for. See ``docs/bench/metrics.md`` for speed, and
``docs/bench/eval.md`` for the faster wFm, the threads and the test-set cache (issue 21; every
score equals the earlier code's to 1e-9, ``tests/test_eval_speed.py``).
"""

from kdas_lite.metrics._common import CURVE_NAMES, METRIC_NAMES, THRESHOLDS
from kdas_lite.metrics.scoring import (
    MetricAccumulator,
    default_workers,
    evaluate_maps,
    score_map,
)
from kdas_lite.metrics.structure import s_measure
from kdas_lite.metrics.thresholded import threshold_curves
from kdas_lite.metrics.validation import batch_dice
from kdas_lite.metrics.weighted_f import weighted_f_measure

__all__ = [
    "CURVE_NAMES",
    "METRIC_NAMES",
    "THRESHOLDS",
    "MetricAccumulator",
    "batch_dice",
    "default_workers",
    "evaluate_maps",
    "s_measure",
    "score_map",
    "threshold_curves",
    "weighted_f_measure",
]
