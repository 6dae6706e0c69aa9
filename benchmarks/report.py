"""The Markdown report: ratios against their targets, further ratios, and all timings."""

from __future__ import annotations

from typing import Any


def ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return a["median_s"] / b["median_s"]


def targets_table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(claim, measured, target, verdict) rows."""
    rows: list[tuple[str, str, str, str]] = []

    def add(
        claim: str, value: float, limit: float, better: str = "<=", fmt: str = "{:.2f}x"
    ) -> None:
        ok = value <= limit if better == "<=" else value >= limit
        rows.append(
            (claim, fmt.format(value), f"{better} {fmt.format(limit)}", "met" if ok else "missed")
        )

    for key in ("passes_224", "passes_600"):
        if key not in results:
            continue
        r = results[key]
        tag = f"{r['size']}x{r['size']}, batch {r['batch']}"
        add(
            f"NormGrad multi conv3x3 / floor ({tag})",
            ratio(r["NormGrad multi conv3x3"], r["floor multi (hooks + autograd.grad)"]),
            1.05,
        )
        add(
            f"NormGrad multi conv3x3 / forward+backward ({tag})",
            ratio(r["NormGrad multi conv3x3"], r["forward+backward"]),
            0.55,
        )
        if "Captum LayerGradCam" in r:
            add(
                f"NormGrad single / Captum LayerGradCam ({tag})",
                ratio(r["NormGrad single conv3x3"], r["Captum LayerGradCam"]),
                1.0,
            )
            add(
                f"normgrad GradCAM / Captum LayerGradCam ({tag})",
                ratio(r["normgrad GradCAM"], r["Captum LayerGradCam"]),
                1.0,
            )
        if "pytorch-grad-cam GradCAM" in r:
            single = r["NormGrad single conv3x3 (beside pytorch-grad-cam)"]
            cam = r["normgrad GradCAM (beside pytorch-grad-cam)"]
            add(
                f"NormGrad single / pytorch-grad-cam GradCAM ({tag})",
                ratio(single, r["pytorch-grad-cam GradCAM"]),
                0.35,
            )
            add(
                f"normgrad GradCAM / pytorch-grad-cam GradCAM ({tag})",
                ratio(cam, r["pytorch-grad-cam GradCAM"]),
                0.35,
            )
        if "six variants shared" in r:
            worst = max(v["median_s"] for v in r["variants alone"].values())
            add(
                f"six variants shared / slowest single variant ({tag})",
                r["six variants shared"]["median_s"] / worst,
                1.15,
            )
    if "transformer" in results:
        v = results["transformer"]
        tag = f"{v['model']} {v['size']}x{v['size']}, batch {v['batch']}, 4 blocks"
        add(
            f"NormGrad multi conv3x3 / floor ({tag})",
            ratio(v["NormGrad multi conv3x3"], v["floor multi (hooks + autograd.grad)"]),
            1.1,
        )
    if "protocol" in results:
        v = results["protocol"]
        tag = f"resnet50 {v['size']}x{v['size']}, batch {v['batch']}, {v['methods']} methods"
        add(
            f"protocol batch (evaluate) / NormGrad multi conv3x3 ({tag})",
            ratio(v["protocol batch (evaluate, shared passes)"], v["NormGrad multi conv3x3"]),
            2.5,
        )
    if "kernel" in results:
        k = results["kernel"]
        add(
            "conv3x3 kernel: unfold time / normgrad time",
            ratio(k["unfold reference"], k["normgrad kernel"]),
            1.0,
            ">=",
        )
        if "peak_bytes" in k:
            add(
                "conv3x3 kernel: unfold peak memory / normgrad peak memory",
                k["peak_bytes"]["unfold"] / max(1, k["peak_bytes"]["normgrad"]),
                5.0,
                ">=",
            )
        rows.append(
            (
                "conv3x3 kernel: max relative difference to unfold",
                f"{k['max relative difference']:.1e}",
                "<= 1e-5",
                "met" if k["max relative difference"] <= 1e-5 else "missed",
            )
        )
    if "pointing_game" in results:
        p = results["pointing_game"]
        add(
            f"Pointing Game speed-up over a per-sample loop ({p['maps']} maps {p['size']}x{p['size']})",
            ratio(p["per-sample loop"], p["normgrad pointing_game"]),
            20.0,
            ">=",
            "{:.0f}x",
        )
        rows.append(
            (
                "Pointing Game results identical to the loop",
                str(p["identical results"]),
                "True",
                "met" if p["identical results"] else "missed",
            )
        )
    if "detection" in results:
        d = results["detection"]
        read = d["one read of the maps (sum)"]
        tag = f"{d['maps']} maps {d['size']}x{d['size']}"
        add(
            f"FROC / one read of the maps ({tag})",
            ratio(d["normgrad froc (shapes, k=10)"], read),
            3.0,
        )
        add(
            f"energy pointing game (boxes) / one read of the maps ({tag})",
            ratio(d["normgrad energy_pointing_game (boxes)"], read),
            3.0,
        )
    if "dispatch" in results:
        c = results["dispatch"]
        for name, over in (
            ("NormGrad multi conv3x3", 130),
            ("NormGrad single conv3x3", 30),
            ("normgrad GradCAM", 30),
        ):
            add(f"kernels over the floor: {name}", c[name]["over the floor"], over, fmt="{:.0f}")
        for name in ("NormGrad multi conv3x3", "NormGrad single conv3x3", "normgrad GradCAM"):
            add(f"syncs per call: {name}", c[name]["syncs"], 1, fmt="{:.0f}")
            if "cuda syncs" in c[name]:
                add(f"syncs per call on CUDA: {name}", c[name]["cuda syncs"], 1, fmt="{:.0f}")
        add(
            "syncs per batch: protocol batch (evaluate, shared passes)",
            c["protocol batch (evaluate, shared passes)"]["syncs"],
            2,
            fmt="{:.0f}",
        )
    if "memory" in results:
        m = results["memory"]
        add(
            "peak memory: explainer / forward+backward",
            m["explainer"] / max(1, m["forward-backward"]),
            1.2,
        )
    return rows


def further_table(results: dict[str, Any]) -> list[tuple[str, str]]:
    """Ratios without a target that explain the ones with a target."""
    rows = []
    for key in ("passes_224", "passes_600"):
        if key not in results:
            continue
        r = results[key]
        tag = f"{r['size']}x{r['size']}, batch {r['batch']}"
        rows.append(
            (
                f"floor / forward+backward ({tag})",
                f"{ratio(r['floor multi (hooks + autograd.grad)'], r['forward+backward']):.2f}x",
            )
        )
        nhwc = r.get("NormGrad multi conv3x3, channels_last input")
        if nhwc is None:
            continue
        rows += [
            (
                f"NormGrad multi conv3x3, channels_last input / forward+backward ({tag})",
                f"{ratio(nhwc, r['forward+backward']):.2f}x",
            ),
            (
                f"NormGrad multi conv3x3, channels_last input / NormGrad multi conv3x3 ({tag})",
                f"{ratio(nhwc, r['NormGrad multi conv3x3']):.2f}x",
            ),
        ]
    v = results.get("protocol", {})
    if "ten methods called alone, smoothed" in v:
        rows.append(
            (
                "ten methods called alone / protocol batch (evaluate, shared passes)",
                f"{ratio(v['ten methods called alone, smoothed'], v['protocol batch (evaluate, shared passes)']):.2f}x",
            )
        )
    p = results.get("pointing_game", {})
    if "one read of the maps (sum)" in p:
        rows += [
            (
                "Pointing Game: per-sample loop / one read of the maps (the ceiling)",
                f"{ratio(p['per-sample loop'], p['one read of the maps (sum)']):.0f}x",
            ),
            (
                "Pointing Game: normgrad / one read of the maps",
                f"{ratio(p['normgrad pointing_game'], p['one read of the maps (sum)']):.2f}x",
            ),
        ]
    d = results.get("detection", {})
    if "one read of the maps (sum)" in d:
        read = d["one read of the maps (sum)"]
        rows += [
            (
                "peaks (k=10) / one read of the maps",
                f"{ratio(d['normgrad peaks (k=10, min_distance=15)'], read):.2f}x",
            ),
            (
                "energy pointing game (shapes) / one read of the maps",
                f"{ratio(d['normgrad energy_pointing_game (shapes)'], read):.2f}x",
            ),
            (
                f"deletion/insertion: forward passes per image (steps {d['deletion_insertion']['steps']})",
                f"{d['deletion_insertion']['forward images per image']:.0f}",
            ),
        ]
    return rows


def dispatch_table(results: dict[str, Any]) -> list[str]:
    """Syncs and kernels per call of the timed cases (device-independent counts)."""
    c = results.get("dispatch")
    if c is None:
        return []
    floors = c["floor kernels"]
    cuda = any(isinstance(v, dict) and "cuda syncs" in v for v in c.values())
    extra = " syncs on CUDA (debug mode) |" if cuda else ""
    lines = [
        "",
        f"| per call ({c['model']} {c['size']}x{c['size']}, batch {c['batch']}, counted on the "
        f"CPU) | syncs per call | kernels | kernels over the floor |{extra}",
        "| --- | --- | --- | --- |" + (" --- |" if cuda else ""),
        f"| floor multi (hooks + autograd.grad) | 0 | {floors['multi']} | |"
        + (" |" if cuda else ""),
        f"| floor single (hooks + autograd.grad) | 0 | {floors['single']} | |"
        + (" |" if cuda else ""),
    ]
    for name, value in c.items():
        if isinstance(value, dict) and "syncs" in value:
            over = value.get("over the floor")
            lines.append(
                f"| {name} | {value['syncs']} | {value['kernels']} | "
                f"{'' if over is None else over} |"
                + (f" {value.get('cuda syncs', '')} |" if cuda else "")
            )
    if "cuda syncs error" in c:
        lines += ["", f"Counting the syncs on CUDA failed: {c['cuda syncs error']}"]
    return lines


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"Measured on {env['device']} ({env['processor']}, {env['cpu_count']} cores, {env['torch_threads']} torch threads"
        + (f", {env['gpu']}" if "gpu" in env else "")
        + f"), torch {env['torch']}, normgrad {env['normgrad']} at commit `{env['commit'][:12]}`, {env['date']}"
        + (", quick mode (reduced sizes)" if results["quick"] else "")
        + ".",
        "",
    ]
    for part, value in results.items():  # parts measured alone, after the full run
        part_env = value.get("environment") if isinstance(value, dict) else None
        if part != "environment" and part_env and part_env.get("commit") != env.get("commit"):
            lines += [
                f"The {part.replace('_', ' ')} part was measured later, at commit "
                f"`{part_env['commit'][:12]}`, {part_env['date']}, "
                f"{part_env['torch_threads']} torch threads.",
                "",
            ]
    lines += [
        "| claim | measured | target | |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets_table(results)]
    further = further_table(results)
    if further:
        lines += ["", "| further ratio (no target) | measured |", "| --- | --- |"]
        lines += [f"| {a} | {b} |" for a, b in further]
    lines += dispatch_table(results)
    lines += ["", "| case | median (s) | IQR (s) |", "| --- | --- | --- |"]
    for key in ("passes_224", "passes_600"):
        if key in results:
            r = results[key]
            for name, value in r.items():
                if isinstance(value, dict) and "median_s" in value:
                    lines.append(
                        f"| {name} ({r['size']}x{r['size']}, batch {r['batch']}) | {value['median_s']:.4f} | {value['iqr_s']:.4f} |"
                    )
                elif name == "variants alone":
                    for vname, v in value.items():
                        lines.append(
                            f"| NormGrad {vname} alone ({r['size']}x{r['size']}, batch {r['batch']}) | {v['median_s']:.4f} | {v['iqr_s']:.4f} |"
                        )
    for key in ("transformer", "protocol", "kernel", "pointing_game", "detection"):
        if key in results:
            for name, value in results[key].items():
                if isinstance(value, dict) and "median_s" in value:
                    label = f"{name}, {key} part" if name.startswith("one read") else name
                    lines.append(f"| {label} | {value['median_s']:.4f} | {value['iqr_s']:.4f} |")
    if "memory" in results:
        lines += ["", "| peak memory (MiB) | |", "| --- | --- |"]
        shape = f"{results['passes_224']['size']}x{results['passes_224']['size']}, batch {results['passes_224']['batch']}"
        lines += [
            f"| {k} ({shape}) | {v / 2**20:.1f} |"
            for k, v in results["memory"].items()
            if k not in ("size", "batch")
        ]
        if "kernel" in results and "peak_bytes" in results["kernel"]:
            lines += [
                f"| conv3x3 kernel: {k} | {v / 2**20:.1f} |"
                for k, v in results["kernel"]["peak_bytes"].items()
            ]
    return "\n".join(lines) + "\n"
