"""The paper's claims, tested on a run of ``protocol.py``: its Tables 2-6 beside ours.

Reads the per-seed results a run wrote (``results.csv``, and ``curves.csv`` beside it
for the claims at every tolerance) and the paper's tables (``paper_tables.py``), and
writes a Markdown report: for each claim of the paper, the paper's numbers, ours for
each architecture, a one-sided exact test over the seeds, and whether the claim holds.

    python examples/reproduction.py docs/results/full/results.csv \
        --out docs/results/full/reproduction.md

The tests, stated once:

- *A beats B* (multi-layer against single-layer, NormGrad (M) against Grad-CAM, trained
  against randomised): the per-seed differences ``A - B`` on the same test images, and
  the exact sign-flip permutation test of "the mean difference is at most zero" over the
  ``2**seeds`` flips. With five seeds the smallest p is 1/32 = 0.031, reached only when
  A is above B on every seed; each comparison is tested on its own (no correction for
  the number of comparisons).
- *Smoothing*: the per-seed change ``smoothed - unsmoothed``, shown beside the paper's.
- *Consistency across architectures*: the DoM of the two architectures' seeds and its
  permutation p (``normgrad.metrics.dom``).

A comparison reads ✓ when A is above B (the claim's direction) with p < 0.05, ~ when A is
above B with p >= 0.05, = when the mean difference is zero, ✗ when A is below B. The
paper ran three repetitions and reports no test: its columns give the sign of its own
difference only (✓ A above B, ✗ below).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from normgrad import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_tables as paper
from protocol import dom_pairs, smoothed_name

VILS = ("Scaling", "Conv1x1", "Conv3x3")
ALPHA = 0.05

# scores[arch][condition][method] -> the seeds' Pointing Game, in seed order
Scores = dict[str, dict[str, dict[str, list[float]]]]


def read(path: Path) -> tuple[Scores, dict[str, list[float]]]:
    """The Pointing Game of every architecture, condition and method, per seed; and each
    architecture's classifier accuracy per seed."""
    rows: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    accuracy: dict[str, dict[int, float]] = defaultdict(dict)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            seed = int(row["seed"])
            rows[row["architecture"], row["condition"], row["method"]][seed] = float(
                row["pointing_game"]
            )
            accuracy[row["architecture"]][seed] = float(row["classifier_accuracy"])
    scores: Scores = defaultdict(lambda: defaultdict(dict))
    for (arch, condition, method), by_seed in rows.items():
        if set(by_seed) != set(accuracy[arch]):
            raise SystemExit(
                f"{path}: {arch}, {condition}, {method} has seeds {sorted(by_seed)}, the "
                f"architecture {sorted(accuracy[arch])}: differences pair seeds, so each "
                "method needs every seed"
            )
        scores[arch][condition][method] = [by_seed[s] for s in sorted(by_seed)]
    return scores, {a: [v[s] for s in sorted(v)] for a, v in accuracy.items()}


# curves[arch][condition][method][tolerance] -> the seeds' hit rate ("area": the curve's area)
Curves = dict[str, dict[str, dict[str, dict[str, list[float]]]]]


def read_curves(path: Path) -> Curves:
    """The Pointing Game at each of the curves' tolerances (and the area), per seed, from a
    run's ``curves.csv``."""
    rows: dict[tuple[str, str, str, str], dict[int, float]] = defaultdict(dict)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            key = (row["architecture"], row["condition"], row["method"], row["tolerance"])
            rows[key][int(row["seed"])] = float(row["hit_rate"])
    curves: Curves = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for (arch, condition, method, tolerance), by_seed in rows.items():
        curves[arch][condition][method][tolerance] = [by_seed[s] for s in sorted(by_seed)]
    return curves


def sign_flip_p(differences: Sequence[float]) -> float:
    """One-sided exact p of "the mean difference is at most zero": the share of the
    ``2**n`` sign flips whose mean is at least the observed one (ties count)."""
    observed = sum(differences)
    flips = list(itertools.product((1.0, -1.0), repeat=len(differences)))
    tolerance = 1e-12 * max(1.0, sum(abs(d) for d in differences))
    at_least = sum(
        sum(s * d for s, d in zip(signs, differences)) >= observed - tolerance for signs in flips
    )
    return at_least / len(flips)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


# differences of hit rates (k / images) that cancel leave a rounding residue of about 1e-17:
# a mean difference this small is no difference
ZERO = 1e-9


def verdict(differences: Sequence[float]) -> tuple[str, float, float]:
    """(verdict, mean difference, p) of "A beats B" from the per-seed differences."""
    d, p = mean(differences), sign_flip_p(differences)
    if abs(d) <= ZERO:
        return "no difference", 0.0, p
    if d > 0 and p < ALPHA:
        return "yes", d, p
    if d > 0:
        return "same sign, p >= 0.05", d, p
    return "no", d, p


def difference(scores: Scores, arch: str, a: tuple[str, str], b: tuple[str, str]) -> list[float]:
    """Per seed: (condition, method) ``a`` minus ``b``, on smoothed maps."""
    xa = scores[arch][a[0]][smoothed_name(a[1])]
    xb = scores[arch][b[0]][smoothed_name(b[1])]
    return [u - v for u, v in zip(xa, xb, strict=True)]


MARK = {"yes": "✓", "same sign, p >= 0.05": "~", "no difference": "=", "no": "✗"}


def cell(differences: list[float]) -> str:
    answer, d, p = verdict(differences)
    return f"{d:+.3f}, p {p:.3f} {MARK[answer]}"


def paper_cell(value: float) -> str:
    return f"{value:+.3f} {'✓' if value > 0 else '✗'}"


def chunks(archs: list[str]) -> list[list[str]]:
    """The architectures two by two (the paper's CNNs, then the transformers): tables that
    fit the page."""
    return [archs[i : i + 2] for i in range(0, len(archs), 2)]


def group_head(label: str, group: list[str], first: bool) -> list[str]:
    """A table's header: ``label``, the paper's two columns in the first table only,
    then one column per architecture of ``group``."""
    paper_head = "paper LVOT | paper Object-CXR | " if first else ""
    return [
        "",
        f"| {label} | {paper_head}" + " | ".join(group) + " |",
        "| --- |" + " --- |" * (len(group) + 2 * first),
    ]


Comparison = tuple[str, tuple[str, str], tuple[str, str], float, float]


def claim_tables(scores: Scores, archs: list[str], rows: list[Comparison]) -> list[str]:
    """Each row a comparison A - B: the paper's difference on LVOT (ResNet-50) and
    Object-CXR (ResNet-34), and ours per architecture (two architectures per table, the
    paper's columns in the first)."""
    lines: list[str] = []
    for k, group in enumerate(chunks(archs)):
        first = k == 0
        lines += group_head("comparison", group, first)
        for name, a, b, lvot, cxr in rows:
            ours = [cell(difference(scores, arch, a, b)) for arch in group]
            known = f"{paper_cell(lvot)} | {paper_cell(cxr)} | " if first else ""
            lines.append(f"| {name} | {known}" + " | ".join(ours) + " |")
    return lines


def tally(answers: list[str]) -> str:
    """A claim's comparisons on one architecture, counted by verdict (zeros left out)."""
    counts = [(answers.count(answer), MARK[answer]) for answer in MARK]
    return " · ".join(f"{n} {mark}" for n, mark in counts if n) or "none"


def holds(scores: Scores, arch: str, rows: list[Comparison]) -> str:
    """How a claim's comparisons fare on one architecture."""
    return tally([verdict(difference(scores, arch, a, b))[0] for _, a, b, _, _ in rows])


def paper_holds(rows: list[Comparison], column: int) -> str:
    """The signs of the paper's own differences for a claim's comparisons (the paper
    reports no test)."""
    above = sum(row[3 + column] > 0 for row in rows)
    below = sum(row[3 + column] < 0 for row in rows)
    return " · ".join(f"{n} {mark}" for n, mark in ((above, "✓"), (below, "✗")) if n) or "none"


def comparisons() -> dict[str, list[Comparison]]:
    """The paper's directional claims, each as comparisons A - B with the paper's own
    differences (Tables 3 and 4: the repeated, trained models and their randomised
    copies)."""
    claims: dict[str, list[Comparison]] = {}
    repeated = 2  # the "Repeated" column of Tables 3-4: the trained models

    def paper_difference(a: tuple[int, str], b: tuple[int, str]) -> tuple[float, float]:
        return (
            paper.TABLE_3[a[1]][a[0]][0] - paper.TABLE_3[b[1]][b[0]][0],
            paper.TABLE_4[a[1]][a[0]][0] - paper.TABLE_4[b[1]][b[0]][0],
        )

    rows = []
    for vil in VILS:
        multi, single = f"NormGrad {vil} (M)", f"NormGrad {vil}"
        known = paper_difference((repeated, multi), (repeated, single))
        rows.append((f"{vil}: (M) - single", ("trained", multi), ("trained", single), *known))
    claims["Multi-layer NormGrad beats single-layer NormGrad"] = rows
    rows = []
    for vil in VILS:
        multi = f"NormGrad {vil} (M)"
        known = paper_difference((repeated, multi), (repeated, "Grad-CAM"))
        rows.append((f"{vil} (M) - Grad-CAM", ("trained", multi), ("trained", "Grad-CAM"), *known))
    claims["Multi-layer NormGrad beats Grad-CAM"] = rows
    for condition, column, short in (("semi-randomised", 0, "SR"), ("fully-randomised", 1, "FR")):
        rows = []
        for method in paper.METHODS:
            known = paper_difference((repeated, method), (column, method))
            rows.append(
                (f"{method}: trained - {short}", ("trained", method), (condition, method), *known)
            )
        claims[f"Trained models beat {condition} ones ({short})"] = rows
    return claims


def at_every_tolerance(
    curves: Curves, archs: list[str], claims: dict[str, list[Comparison]]
) -> list[str]:
    """The claims about trained models read again at each of the curves' tolerances and by
    the curve's area: where the single tolerance's verdict carries over."""
    first = curves[archs[0]]["trained"]
    columns = list(next(iter(first.values())))
    lines = [
        "",
        "### The same claims at every tolerance",
        "",
        "The comparisons of trained models above, read from each image's distance to the "
        "objects (smoothed maps) at the curves' tolerances (the first is the paper's, "
        "scaled) and by the normalised area under the curve: how many hold (✓) on each "
        "architecture.",
    ]
    for name, rows in claims.items():
        if any(a[0] != "trained" or b[0] != "trained" for _, a, b, _, _ in rows):
            continue
        lines += ["", f"**{name}**", ""]
        lines += [
            "| tolerance | " + " | ".join(archs) + " |",
            "| --- |" + " --- |" * len(archs),
        ]
        for column in columns:
            cells = []
            for arch in archs:
                # the curves read at this tolerance, as per-seed scores
                at: Scores = {
                    arch: {
                        condition: {method: values[column] for method, values in methods.items()}
                        for condition, methods in curves[arch].items()
                    }
                }
                answers = [verdict(difference(at, arch, a, b))[0] for _, a, b, _, _ in rows]
                cells.append(tally(answers))
            head = "area" if column == "area" else f"{float(column):.1f} px"
            lines.append(f"| {head} | " + " | ".join(cells) + " |")
    pairs = dom_pairs(archs)
    for a, b in pairs:
        multi = [m for m in paper.METHODS if m.endswith("(M)")]
        lines += [
            "",
            f"**Consistency: the DoM between {a} and {b} at every tolerance**",
            "",
            "| tolerance | smallest DoM | "
            + " | ".join(m.removeprefix("NormGrad ") for m in multi)
            + " |",
            "| --- | --- |" + " --- |" * len(multi),
        ]
        for column in columns:
            doms = {
                m: abs(
                    mean(curves[a]["trained"][smoothed_name(m)][column])
                    - mean(curves[b]["trained"][smoothed_name(m)][column])
                )
                for m in paper.METHODS
            }
            head = "area" if column == "area" else f"{float(column):.1f} px"
            best = " and ".join(f"{m} ({doms[m]:.3f})" for m in smallest_of(doms))
            lines.append(
                f"| {head} | {best} | " + " | ".join(f"{doms[m]:.3f}" for m in multi) + " |"
            )
    return lines


def smallest_of(values: dict[str, float]) -> list[str]:
    """Every name with the smallest value (ties to the printed precision all named)."""
    low = min(round(v, 3) for v in values.values())
    return [name for name, v in values.items() if round(v, 3) == low]


def report(
    scores: Scores, accuracy: dict[str, list[float]], source: str, curves: Curves | None = None
) -> str:
    archs = list(scores)
    counts = {a: len(next(iter(scores[a]["trained"].values()))) for a in archs}
    seeds = min(counts.values())
    said = (
        f"{seeds} seeds per architecture"
        if len(set(counts.values())) == 1
        else "seeds per architecture "  # a run stopped before its last models
        + ", ".join(f"{a} {n}" for a, n in counts.items())
    )
    claims = comparisons()
    lines = [
        f"Ours: the run whose per-seed results are `{source}` ({said}; mean test accuracy "
        + ", ".join(f"{a} {mean(accuracy[a]):.3f}" for a in archs)
        + "). Paper: its Tables 2-6 (LVOT with ResNet-50, Object-CXR with ResNet-34; "
        "EfficientNet-B0 on both in Tables 5-6). Ours are on smoothed maps, as the paper's "
        "Tables 3-6. A comparison A - B reads: our mean difference over seeds, the "
        "one-sided exact sign-flip p, and ✓ (A above B, p < 0.05), ~ (A above B, "
        "p >= 0.05), = (no difference) or ✗ (A below B); each comparison is tested on its "
        "own, without a correction for their number. The paper reports no test (three "
        "repetitions): its columns give the sign of its own difference, ✓ or ✗."
        + (
            f" With {seeds} seeds no p can fall below 0.05: only the signs can be read."
            if 0.5**seeds >= ALPHA
            else ""
        ),
        "",
        "### The claims at a glance",
        "",
        "Each claim's comparisons counted by verdict (below: each comparison).",
    ]
    for k, group in enumerate(chunks(archs)):  # two architectures per table, as below
        first = k == 0
        lines += group_head("claim", group, first)
        for claim, rows in claims.items():
            paper_cells = f"{paper_holds(rows, 0)} | {paper_holds(rows, 1)} | " if first else ""
            ours = [holds(scores, arch, rows) for arch in group]
            lines.append(f"| {claim} | {paper_cells}" + " | ".join(ours) + " |")
    for claim, rows in claims.items():
        lines += ["", f"### {claim}"]
        lines += claim_tables(scores, archs, rows)
    if curves is not None:
        lines += at_every_tolerance(curves, archs, claims)
    # smoothing
    lines += [
        "",
        "### Smoothing (the paper: large gains for the gradient methods, little change for "
        "NormGrad and Grad-CAM)",
        "",
        "Change of the Pointing Game when the maps are smoothed (smoothed - unsmoothed): the "
        "paper's single models (Table 2), ours mean ± std over seeds.",
    ]
    for k, group in enumerate(chunks(archs)):
        first = k == 0
        lines += group_head("method", group, first)
        for method in paper.METHODS:
            before_lvot, after_lvot, before_cxr, after_cxr = paper.TABLE_2[method]
            ours = []
            for arch in group:
                trained = scores[arch]["trained"]
                change = [
                    s - u
                    for s, u in zip(trained[smoothed_name(method)], trained[method], strict=True)
                ]
                ours.append(f"{mean(change):+.3f} ± {std(change):.3f}")
            known = (
                f"{after_lvot - before_lvot:+.3f} | {after_cxr - before_cxr:+.3f} | "
                if first
                else ""
            )
            lines.append(f"| {method} | {known}" + " | ".join(ours) + " |")
    # consistency
    pairs = dom_pairs(archs)
    lines += [
        "",
        "### NormGrad is the most consistent across architectures (DoM)",
        "",
        "The Difference of Means of the trained models' Pointing Game between two "
        "architectures (smaller: more consistent), and its exact permutation p (small: the "
        "architectures differ).",
        "",
        "| method | paper LVOT | paper Object-CXR | "
        + " | ".join(f"{a} vs {b}" for a, b in pairs)
        + " |",
        "| --- | --- | --- |" + " --- |" * len(pairs),
    ]
    doms: dict[tuple[str, str], dict[str, float]] = {pair: {} for pair in pairs}
    for method in paper.METHODS:
        cells = []
        for a, b in pairs:
            result = metrics.dom(
                scores[a]["trained"][smoothed_name(method)],
                scores[b]["trained"][smoothed_name(method)],
            )
            doms[a, b][method] = result.dom
            cells.append(f"{result.dom:.3f} (p {result.p_value:.3f})")
        lines.append(
            f"| {method} | {paper.TABLE_5[method][2]:.3f} | {paper.TABLE_6[method][2]:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    smallest = [
        f"paper LVOT: {min(paper.METHODS, key=lambda m: paper.TABLE_5[m][2])}",
        f"paper Object-CXR: {min(paper.METHODS, key=lambda m: paper.TABLE_6[m][2])}",
    ] + [f"{a} vs {b}: {' and '.join(smallest_of(d))}" for (a, b), d in doms.items()]
    lines += ["", "Smallest DoM: " + "; ".join(smallest) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results.csv")
    parser.add_argument("--out", type=Path, help="where to write the Markdown (default: print)")
    args = parser.parse_args(argv)
    scores, accuracy = read(args.results)
    beside = args.results.with_name("curves.csv")
    curves = read_curves(beside) if beside.exists() else None
    text = report(scores, accuracy, args.results.as_posix(), curves)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return text


if __name__ == "__main__":
    main()
