"""What ``sparse_inference_`` chose for each layer, with the timings behind the choice."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerChoice:
    """One eligible layer: its sparsity, the format kept (``"dense"`` if none won) and timings."""

    name: str
    shape: tuple[int, int]
    batch: int
    sparsity: float
    format: str
    dense_us: float | None
    sparse_us: float | None
    dense_bytes: int
    stored_bytes: int
    candidates_us: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def speedup(self) -> float | None:
        if self.dense_us is None or self.sparse_us is None or self.format == "dense":
            return None
        return self.dense_us / self.sparse_us


@dataclass
class SparseInferenceReport:
    """Per-layer choices plus totals; ``table()`` is a rich table, ``to_dict()`` plain JSON."""

    layers: list[LayerChoice]
    threads: int
    kernels: str
    cache: str = "warm"

    @property
    def converted(self) -> int:
        return sum(1 for r in self.layers if r.format != "dense")

    @property
    def dense_us(self) -> float:
        return sum(r.dense_us or 0.0 for r in self.layers)

    @property
    def chosen_us(self) -> float:
        return sum((r.sparse_us if r.format != "dense" else r.dense_us) or 0.0 for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.layers:
            d = asdict(r)
            d["shape"] = list(r.shape)
            d["speedup"] = r.speedup
            rows.append(d)
        return {
            "threads": self.threads,
            "kernels": self.kernels,
            "cache": self.cache,
            "converted": self.converted,
            "eligible": len(self.layers),
            "dense_us": self.dense_us,
            "chosen_us": self.chosen_us,
            "layers": rows,
        }

    def table(self, max_rows: int = 40):
        """A rich ``Table``: one row per layer (the first ``max_rows``), then the totals."""
        from rich.table import Table

        t = Table(title=f"sparse inference: {self.converted}/{len(self.layers)} layers converted, "
                  f"{self.threads} thread(s), kernels: {self.kernels}, weights timed {self.cache}")
        for col in ("layer", "shape", "batch", "sparsity", "format", "dense µs", "sparse µs", "speedup", "bytes"):
            t.add_column(col, justify="left" if col in ("layer", "format") else "right")
        for r in self.layers[:max_rows]:
            t.add_row(
                r.name, f"{r.shape[0]}x{r.shape[1]}", str(r.batch), f"{100 * r.sparsity:.1f}%",
                r.format if not r.reason else f"{r.format} ({r.reason})",
                _us(r.dense_us), _us(r.sparse_us), f"{r.speedup:.2f}x" if r.speedup else "-",
                f"{r.stored_bytes / max(1, r.dense_bytes):.2f}",
            )
        if len(self.layers) > max_rows:
            t.add_row(f"... {len(self.layers) - max_rows} more", *[""] * 8)
        total = self.dense_us / self.chosen_us if self.chosen_us else 1.0
        stored = sum(r.stored_bytes for r in self.layers) / max(1, sum(r.dense_bytes for r in self.layers))
        t.add_row("total", "", "", "", "", _us(self.dense_us), _us(self.chosen_us), f"{total:.2f}x", f"{stored:.2f}")
        return t

    def print(self) -> None:
        from rich.console import Console

        Console().print(self.table())


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
