"""The transfer-set experiment's one fixed split of PraNet's 1450 training images.

Writes ``kdas_lite/data/splits/transfer_set.json`` (committed; ``--check`` rebuilds it and
stops when it differs). Every list holds file stems of ``TrainDataset/images``:

==============  ===========================================================================
list            what it is
==============  ===========================================================================
``T``           the teachers' images (≈ 700): ``T_train`` ∪ ``T_val``
``T_train``     what the teachers train on
``T_val``       the teachers' validation images (best-epoch choice), never trained on
``U``           the transfer set (≈ 500), disjoint from ``T``: the students never see its
                labels (arms D and E), only the oracle (arm B) does
``L200``        the students' labelled images, ``⊂ T_train``
``L50``         the smaller label budget, ``⊂ L200``
``S_val``       the students' validation images (best-epoch choice), ``⊂ T_val ⊂ T \\ L``
``reserve``     the rest, used by nothing
==============  ===========================================================================

Stratified by source (Kvasir-SEG, CVC-ClinicDB: each list keeps the training set's shares)
and, for CVC-ClinicDB, by video sequence: its frames are numbered 1–612 consecutively within
their sequences (550 of them are training images; the other 62 are PraNet's ClinicDB test
set). The file names carry no sequence id, so the sequences are inferred (see
:data:`SEQUENCE_STARTS`) and assigned whole, as contiguous blocks, to ``T``, ``U`` or
``reserve``: no ClinicDB sequence has frames in both ``T`` and ``U``. Kvasir-SEG images are
single frames of distinct examinations as far as their names tell (random ids): they are drawn
at random.

Usage::

    KDAS_DATA=../shared/data .venv/bin/python experiments/transfer_split.py
    KDAS_DATA=../shared/data .venv/bin/python experiments/transfer_split.py --check
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kdas_lite.data import find_layout, find_shared_data, pair_files, training_source
from kdas_lite.data.registry import image_mask_dirs

OUT = Path("kdas_lite/data/splits/transfer_set.json")
SEED = 2029  # of every random draw below
SIZES = {"T": 700, "U": 500, "T_val": 70, "L200": 200, "L50": 50, "S_val": 40}

#: First frames of CVC-ClinicDB's 29 video sequences: a list recalled from the literature on
#: the dataset (not verifiable offline here), cross-checked against the images: the mean
#: absolute change between consecutive frames (48 × 36 px thumbnails) at 21 of these 28
#: boundaries ranks among the 41 largest of the 549 frame-to-frame changes.
SEQUENCE_STARTS = (1, 26, 51, 68, 79, 104, 127, 152, 178, 200, 206, 228, 253, 278, 298, 318,
                   343, 364, 384, 409, 429, 448, 467, 479, 504, 529, 547, 572, 592)
#: The 7 boundaries that the image change does not confirm (rank 57 or lower): the sequences
#: on both sides of them are kept together in one block, so that a wrong boundary cannot put
#: frames of one sequence in both T and U.
UNCONFIRMED_STARTS = (200, 206, 228, 253, 298, 448, 547)


def clinicdb_blocks(stems: list[str]) -> list[list[str]]:
    """The ClinicDB training frames (numeric stems) grouped into contiguous blocks: the
    sequences of :data:`SEQUENCE_STARTS`, merged across :data:`UNCONFIRMED_STARTS`."""
    starts = [s for s in SEQUENCE_STARTS if s not in UNCONFIRMED_STARTS]
    blocks: list[list[str]] = [[] for _ in starts]
    for stem in sorted(stems, key=int):
        blocks[max(k for k, s in enumerate(starts) if s <= int(stem))].append(stem)
    return [b for b in blocks if b]


def assign_blocks(blocks: list[list[str]], targets: dict[str, int],
                  rng: np.random.Generator) -> dict[str, list[str]]:
    """Whole blocks to the parts of ``targets`` (name → frames wanted), in a random order,
    each block to the part furthest below its target (relative)."""
    parts: dict[str, list[str]] = {name: [] for name in targets}
    for k in rng.permutation(len(blocks)).tolist():
        name = min(targets, key=lambda n: (len(parts[n]) - targets[n]) / targets[n])
        parts[name] += blocks[k]
    return parts


def draw(items: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` of ``items`` at random, sorted."""
    return sorted(np.asarray(sorted(items))[rng.permutation(len(items))[:n]].tolist())


def shares(total: int, counts: dict[str, int]) -> dict[str, int]:
    """``total`` split over the sources in proportion to ``counts`` (largest remainder)."""
    n = sum(counts.values())
    exact = {k: total * v / n for k, v in counts.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: out[k] - exact[k])[:total - sum(out.values())]:
        out[k] += 1
    return out


def build_split(data_root: Path) -> dict[str, Any]:
    """Every list of the module docstring, with the counts per source and the provenance."""
    layout = find_layout(data_root)
    pairs = [p for p in pair_files(*image_mask_dirs(layout.train)) if p[0].stem not in
             layout.exclude]
    by_source: dict[str, list[str]] = {}
    for image, _ in pairs:
        by_source.setdefault(training_source(image), []).append(image.stem)
    counts = {k: len(v) for k, v in by_source.items()}
    rng = np.random.default_rng(SEED)
    lists: dict[str, list[str]] = {"T": [], "U": [], "reserve": []}
    target = {name: shares(SIZES[name], counts) for name in ("T", "U")}
    for source, stems in sorted(by_source.items()):
        want = {"T": target["T"][source], "U": target["U"][source]}
        want["reserve"] = len(stems) - want["T"] - want["U"]
        if source == "CVC-ClinicDB":
            parts = assign_blocks(clinicdb_blocks(stems), want, rng)
        else:
            shuffled = np.asarray(sorted(stems))[rng.permutation(len(stems))].tolist()
            parts = {"T": shuffled[:want["T"]], "U": shuffled[want["T"]:want["T"] + want["U"]],
                     "reserve": shuffled[want["T"] + want["U"]:]}
        for name, part in parts.items():
            lists[name] += part
    source_of = {stem: s for s, stems in by_source.items() for stem in stems}

    def stratified(pool: list[str], n: int) -> list[str]:
        groups: dict[str, list[str]] = {}
        for stem in pool:
            groups.setdefault(source_of[stem], []).append(stem)
        want = shares(n, {k: len(v) for k, v in groups.items()})
        return sorted(s for k in sorted(groups) for s in draw(groups[k], want[k], rng))

    lists["T_val"] = stratified(lists["T"], SIZES["T_val"])
    lists["T_train"] = sorted(set(lists["T"]) - set(lists["T_val"]))
    lists["L200"] = stratified(lists["T_train"], SIZES["L200"])
    lists["L50"] = stratified(lists["L200"], SIZES["L50"])
    lists["S_val"] = stratified(lists["T_val"], SIZES["S_val"])
    lists = {k: sorted(v) for k, v in lists.items()}
    blocks = clinicdb_blocks(by_source.get("CVC-ClinicDB", []))
    where = {b[0]: next(n for n in ("T", "U", "reserve") if b[0] in lists[n]) for b in blocks}
    return {
        "about": "kdas_lite transfer-set split (experiments/transfer_split.py): file stems of "
                 "PraNet's TrainDataset/images; no test image is in any list",
        "seed": SEED,
        "counts": {name: {src: sum(source_of[s] == src for s in stems) for src in counts}
                   for name, stems in lists.items()},
        "clinicdb_sequence_starts": list(SEQUENCE_STARTS),
        "clinicdb_unconfirmed_starts": list(UNCONFIRMED_STARTS),
        "clinicdb_blocks": [{"frames": f"{b[0]}-{b[-1]}", "n": len(b), "part": where[b[0]]}
                            for b in blocks],
        "clinicdb_inference": "sequence starts recalled from the literature (not verifiable "
                              "offline), 21 of 28 confirmed by a large frame-to-frame image "
                              "change; the 7 unconfirmed boundaries are not used (their "
                              "neighbours form one block), so no inferred sequence and no "
                              "doubtful boundary has frames in both T and U; L and S_val draw "
                              "frames within T's blocks (they share sequences with T_train, as "
                              "a student's labelled images share the teacher's videos)",
        "lists": lists,
    }


def check(split: dict[str, Any]) -> None:
    """The relations of the module docstring (raise AssertionError when one fails)."""
    ls = {k: set(v) for k, v in split["lists"].items()}
    assert not ls["T"] & ls["U"] and not (ls["T"] | ls["U"]) & ls["reserve"]
    assert ls["T"] == ls["T_train"] | ls["T_val"] and not ls["T_train"] & ls["T_val"]
    assert ls["L50"] <= ls["L200"] <= ls["T_train"] and ls["S_val"] <= ls["T_val"]
    for name, n in SIZES.items():  # T and U: ClinicDB goes in whole blocks
        assert abs(len(ls[name]) - n) <= (0.05 * n if name in ("T", "U") else 0), name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true",
                        help="rebuild and compare with --out instead of writing it")
    args = parser.parse_args(argv)
    data_root = find_shared_data()
    if data_root is None or not find_layout(data_root).train:
        sys.exit("transfer_split.py: error: no real PraNet data: set KDAS_DATA to its root")
    split = build_split(data_root)
    check(split)
    text = json.dumps(split, indent=1) + "\n"
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'the same' if same else 'DIFFERS from the rebuilt split'}")
        sys.exit(0 if same else 1)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: " + ", ".join(f"{k} {sum(v.values())}"
                                             for k, v in split["counts"].items()))


if __name__ == "__main__":
    main()
