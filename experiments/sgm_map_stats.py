"""What + L_SGM does to the student's map: logit statistics and where the map changes.

Beside the intervention rows of the L_SGM mechanism (docs/RESULTS.md), this measures the
trained models of the real-data lab (``experiments/real_lab.py --out DIR``) on the five test
sets, at the models' input size (128 px), for every seed given:

- **logit statistics**: mean, standard deviation and mean |logit| of P1 (the map L_SGM acts
  on) and of P1 + P2 (the map that is evaluated), on background and on foreground pixels
  (the ground truth resized to 128 px, nearest), for the teacher, the student alone and the
  student + L_SGM;
- **where the map changes** from the student alone to + L_SGM, with p = σ(P1 + P2): the mean
  signed and absolute change of p in three regions, background (farther than ``--band`` px
  from the polyp's edge, outside), boundary band (within ``--band`` px of the edge, either
  side) and interior (inside, farther than ``--band`` px), each region's share of the pixels
  and of the total |Δp|; and the error rates of the maps thresholded at 0.5 (false positives
  on background, false negatives in the interior);
- **the mirror**: L_SGM compares P + Pᵀ, which cannot tell pixel (i, j) from (j, i). Of the
  false-positive pixels (p > 0.5 where the ground truth is background), the share whose mirror
  (j, i) is polyp, against the share of all background pixels whose mirror is polyp (what a
  false positive placed at random would give).

Pixels are pooled over all images of a set (and over all sets for "all"). The result goes to
``map_statistics`` in ``--json`` (docs/results/sgm_mechanism.json; the rest of that file is
left as it is) and, as Markdown, between the ``sgm-maps`` markers of ``--docs``.

Usage (after the seed's ``alone`` and ``sgm`` runs)::

    .venv/bin/python experiments/sgm_map_stats.py --out runs/real-lab --seeds 0
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lab_experiment import save_json
from torch import Tensor
from torch.utils.data import DataLoader

from kdas_lite.data import PolypTestDataset, collate_test, find_layout, find_shared_data
from kdas_lite.runs import load_trained

MODELS = ("teacher", "alone", "sgm")
REGIONS = ("background", "band", "interior")
START = "<!-- sgm-maps: begin (written by experiments/sgm_map_stats.py) -->"
END = "<!-- sgm-maps: end -->"


def regions(gt: Tensor, band: int) -> dict[str, Tensor]:
    """Boolean masks of the three regions of a ``(B, 1, H, W)`` boolean ground truth: the
    boundary band is within ``band`` px (a square neighbourhood) of a pixel of the other class;
    background and interior are the rest outside and inside."""
    g = gt.float()
    k = 2 * band + 1
    dilated = F.max_pool2d(g, k, stride=1, padding=band) > 0
    eroded = -F.max_pool2d(-g, k, stride=1, padding=band) > 0
    in_band = dilated & ~eroded
    return {"background": ~dilated, "band": in_band, "interior": eroded}


class Accumulator:
    """Pixel-pooled sums for one test set (or all): see the module docstring."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}

    def add(self, key: str, value: Tensor | float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def update(self, logits: dict[str, tuple[Tensor, Tensor]], gt: Tensor, band: int) -> None:
        """Add one batch: ``logits[model] = (P1, P2)`` at the size of ``gt`` (B, 1, H, W)."""
        fg, bg = gt, ~gt
        for model, (p1, p2) in logits.items():
            for name, x in (("p1", p1), ("sum", p1 + p2)):
                for part, where in (("bg", bg), ("fg", fg)):
                    v = x[where]
                    self.add(f"{model}/{name}/{part}/n", v.numel())
                    self.add(f"{model}/{name}/{part}/s", v.sum())
                    self.add(f"{model}/{name}/{part}/s2", (v * v).sum())
                    self.add(f"{model}/{name}/{part}/abs", v.abs().sum())
        probs = {m: torch.sigmoid(p1 + p2) for m, (p1, p2) in logits.items()}
        masks = regions(gt, band)
        delta = probs["sgm"] - probs["alone"]
        for region, where in masks.items():
            self.add(f"region/{region}/n", where.sum())
            self.add(f"region/{region}/delta", delta[where].sum())
            self.add(f"region/{region}/absdelta", delta[where].abs().sum())
            for model in ("alone", "sgm", "teacher"):
                self.add(f"{model}/pos/{region}", (probs[model][where] > 0.5).sum())
        mirror = gt.transpose(-1, -2)
        self.add("mirror/bg", bg.sum())
        self.add("mirror/bg_mirror_fg", (bg & mirror).sum())
        for model in ("alone", "sgm", "teacher"):
            false_pos = (probs[model] > 0.5) & bg
            self.add(f"{model}/fp", false_pos.sum())
            self.add(f"{model}/fp_mirror_fg", (false_pos & mirror).sum())

    def merge(self, other: Accumulator) -> None:
        for key, value in other.sums.items():
            self.add(key, value)

    def result(self) -> dict[str, Any]:
        """The statistics from the sums (see the module docstring)."""
        s = self.sums

        def ratio(a: str, b: str) -> float | None:
            return s[a] / s[b] if s.get(b) else None

        out: dict[str, Any] = {"logits": {}, "regions": {}, "error_rates": {}, "mirror": {}}
        for model in MODELS:
            for name in ("p1", "sum"):
                for part in ("bg", "fg"):
                    key = f"{model}/{name}/{part}"
                    n = s.get(f"{key}/n", 0.0)
                    if not n:
                        continue
                    mean = s[f"{key}/s"] / n
                    var = max(s[f"{key}/s2"] / n - mean * mean, 0.0)
                    out["logits"][key] = {"mean": mean, "std": var ** 0.5,
                                          "mean_abs": s[f"{key}/abs"] / n}
        total_abs = sum(s[f"region/{r}/absdelta"] for r in REGIONS)
        total_n = sum(s[f"region/{r}/n"] for r in REGIONS)
        for region in REGIONS:
            n = s[f"region/{region}/n"]
            out["regions"][region] = {
                "pixel_share": n / total_n,
                "mean_delta_p": s[f"region/{region}/delta"] / n if n else None,
                "mean_abs_delta_p": s[f"region/{region}/absdelta"] / n if n else None,
                "share_of_abs_delta": s[f"region/{region}/absdelta"] / total_abs
                if total_abs else None}
        for model in ("teacher", "alone", "sgm"):
            out["error_rates"][model] = {
                "fp_rate_background": ratio(f"{model}/pos/background", "region/background/n"),
                "positive_rate_band": ratio(f"{model}/pos/band", "region/band/n"),
                "fn_rate_interior": None if not s["region/interior/n"] else
                1 - s[f"{model}/pos/interior"] / s["region/interior/n"]}
            out["mirror"][model] = {"false_positive_pixels": s[f"{model}/fp"],
                                    "share_with_polyp_mirror": ratio(f"{model}/fp_mirror_fg",
                                                                     f"{model}/fp")}
        out["mirror"]["chance"] = ratio("mirror/bg_mirror_fg", "mirror/bg")
        return out


def measure(models: dict[str, torch.nn.Module], folders: dict[str, Path], size: int,
            band: int, batch_size: int = 16) -> dict[str, Any]:
    """Set → :meth:`Accumulator.result` for ``models`` (keys :data:`MODELS`), plus "all"."""
    means = {tuple(m.input_mean) for m in models.values()}
    stds = {tuple(m.input_std) for m in models.values()}
    if len(means) != 1 or len(stds) != 1:
        raise ValueError("the models expect different input normalisations")
    total = Accumulator()
    results = {}
    for name, folder in folders.items():
        dataset = PolypTestDataset(folder, size=size, mean=next(iter(means)),
                                   std=next(iter(stds)))
        acc = Accumulator()
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_test):
            gt = torch.stack([F.interpolate(torch.from_numpy(m)[None, None].float(),
                                            size=(size, size), mode="nearest")[0]
                              for m in batch["mask"]]) > 0.5
            with torch.inference_mode():
                logits = {k: tuple(p.float() for p in model(batch["image"])[:2])
                          for k, model in models.items()}
            acc.update(logits, gt, band)
        results[name] = acc.result()
        total.merge(acc)
    results["all"] = total.result()
    return results


def markdown(per_seed: dict[str, dict[str, Any]], band: int) -> str:
    """Tables over all test images (pixels pooled), one row per seed."""
    lines = ["Logits (all test images, pixels pooled; bg/fg = ground-truth background/polyp; "
             "P1 is the map L_SGM acts on, P1 + P2 the evaluated one), mean ± std:", "",
             "| seed | map | teacher bg | alone bg | + L_SGM bg | teacher fg | alone fg "
             "| + L_SGM fg |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for seed, res in per_seed.items():
        stats = res["all"]["logits"]
        for name in ("p1", "sum"):
            cells = [f"{stats[f'{m}/{name}/{part}']['mean']:+.2f} ± "
                     f"{stats[f'{m}/{name}/{part}']['std']:.2f}"
                     for part in ("bg", "fg") for m in MODELS]
            lines.append(f"| {seed} | {'P1' if name == 'p1' else 'P1 + P2'} | "
                         + " | ".join(cells) + " |")
    lines += ["", f"Where σ(P1 + P2) changes from the student alone to + L_SGM (band: within "
              f"{band} px of the polyp's edge at 128 px), and the maps' error rates at 0.5:",
              "", "| seed | region | pixel share | mean Δp | mean abs Δp | share of all abs Δp "
              "| positive rate: teacher / alone / + L_SGM |", "|---|---|---:|---:|---:|---:|---|"]
    for seed, res in per_seed.items():
        regions_ = res["all"]["regions"]
        rates = res["all"]["error_rates"]
        keys = {"background": "fp_rate_background", "band": "positive_rate_band",
                "interior": "fn_rate_interior"}
        for region in REGIONS:
            r = regions_[region]
            rate = " / ".join(f"{(1 - rates[m][keys[region]]) if region == 'interior' else rates[m][keys[region]]:.3f}"  # noqa: E501
                              for m in MODELS)
            lines.append(f"| {seed} | {region} | {r['pixel_share']:.3f} | "
                         f"{r['mean_delta_p']:+.4f} | {r['mean_abs_delta_p']:.4f} | "
                         f"{r['share_of_abs_delta']:.2f} | {rate} |")
    lines += ["", "The mirror: share of false-positive pixels whose mirror (j, i) is polyp "
              "(chance: the share of all background pixels whose mirror is polyp):", "",
              "| seed | chance | teacher | alone | + L_SGM | false-positive pixels alone / "
              "+ L_SGM |", "|---|---:|---:|---:|---:|---:|"]
    for seed, res in per_seed.items():
        m = res["all"]["mirror"]
        lines.append(f"| {seed} | {m['chance']:.3f} | " + " | ".join(
            "—" if m[k]["share_with_polyp_mirror"] is None else
            f"{m[k]['share_with_polyp_mirror']:.3f}" for k in MODELS)
            + f" | {m['alone']['false_positive_pixels']:.0f} / "
            f"{m['sgm']['false_positive_pixels']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/real-lab"),
                        help="the --out folder of experiments/real_lab.py")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data", type=Path, help="PraNet data root (default: the shared data)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--band", type=int, default=3, help="boundary band half-width, px")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("docs/results/sgm_mechanism.json"))
    parser.add_argument("--docs", type=Path, default=Path("docs/RESULTS.md"))
    args = parser.parse_args(argv)
    command = shlex.join(["python", "experiments/sgm_map_stats.py", *(
        f"<outside the repository>/{Path(a).name}" if a.startswith("/") else a
        for a in (sys.argv[1:] if argv is None else argv))])
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data_root = args.data or find_shared_data()
    if data_root is None:
        sys.exit("sgm_map_stats.py: error: no data: pass --data (the PraNet data root)")
    folders = dict(find_layout(data_root).test)
    teacher_path = args.out / "runs" / "teacher" / "teacher" / "best.pth"
    per_seed = {}
    for seed in args.seeds:
        paths = {"teacher": teacher_path,
                 **{row: args.out / "runs" / f"seed{seed}" / row / "student" / "best.pth"
                    for row in ("alone", "sgm")}}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            print(f"seed {seed}: skipped, no checkpoint {', '.join(missing)}", flush=True)
            continue
        models = {k: load_trained(p).eval() for k, p in paths.items()}
        per_seed[str(seed)] = measure(models, folders, args.size, args.band)
        print(f"seed {seed} measured ({(time.perf_counter() - started) / 60:.1f} min)",
              flush=True)
    if not per_seed:
        sys.exit("sgm_map_stats.py: error: no seed has both the alone and the sgm checkpoint "
                 f"under {args.out}/runs; run experiments/real_lab.py first")
    text = markdown(per_seed, args.band)
    print(text)
    doc = json.loads(args.json.read_text(encoding="utf-8")) if args.json.exists() else {}
    doc["map_statistics"] = {"command": command, "band_px": args.band, "size": args.size,
                             "seeds": [int(s) for s in per_seed], "per_seed": per_seed}
    save_json(args.json, doc)
    if args.docs.exists():
        page = args.docs.read_text(encoding="utf-8")
        if START in page and END in page:
            head, rest = page.split(START, 1)
            args.docs.write_text(head + START + "\n" + f"command: `{command}`\n\n" + text
                                 + rest[rest.index(END):], encoding="utf-8")
        else:
            print(f"warning: {args.docs} has no {START} block", file=sys.stderr)
    print(f"wall time: {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
