"""mkdocs hooks: let a fresh clone build the site before the demonstration has run.

`docs/protocol.md` includes the tables and figures that `python examples/protocol.py --quick
--out docs/generated/protocol` writes (CI runs it before `mkdocs build`). When they are
missing, this hook writes placeholders that say how to generate them, so that `mkdocs build`
works on its own; the demonstration's own files are never overwritten.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

GENERATED = Path(__file__).parent / "generated" / "protocol"
FIGURES = tuple(
    f"{arch}_seed0_example0_{group}.png"
    for arch in ("resnet18", "efficientnet_b0")
    for group in ("normgrad", "baselines")
) + tuple(
    f"curves_{arch}_{condition}.png"
    for arch in ("resnet18", "efficientnet_b0")
    for condition in ("trained", "fully-randomised")
)
TEXTS = ("tables.md", "summary.md")
PLACEHOLDER = """!!! note "Not generated in this build"
    These tables are measured by the demonstration when the documentation is built in CI.
    To see them in a local build, run

        python examples/protocol.py --quick --quiet --out docs/generated/protocol

    (about 4 minutes on 2 CPU cores), then `mkdocs build` again.
"""


def _grey_png(width: int = 2, height: int = 1) -> bytes:
    """A tiny valid grey PNG, standing in for a figure the demonstration has not drawn."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xc0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_placeholders(directory: Path = GENERATED) -> list[Path]:
    """Write the placeholder tables and figures that are missing; return the paths written."""
    written = []
    for name in TEXTS:
        text = directory / name
        if not text.exists():
            text.parent.mkdir(parents=True, exist_ok=True)
            text.write_text(PLACEHOLDER, encoding="utf-8")
            written.append(text)
    for name in FIGURES:
        figure = directory / "figures" / name
        if not figure.exists():
            figure.parent.mkdir(parents=True, exist_ok=True)
            figure.write_bytes(_grey_png())
            written.append(figure)
    return written


def on_config(config: Any) -> Any:
    """mkdocs entry point: make sure the generated files exist before pages are read."""
    write_placeholders()
    return config
