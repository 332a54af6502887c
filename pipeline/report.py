"""Terminal rendering with rich: build progress (stderr) and the parity table (stdout)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.build import Events


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[Events]:
    """A spinner naming the running step, and one line per step as it happens, on stderr."""
    console = Console(stderr=True)
    if not enabled:
        yield lambda step, message: None
        return
    start = time.perf_counter()
    with console.status("starting") as status:
        def on_event(step: str, message: str) -> None:
            status.update(f"{step}: {message}")
            console.print(f"[dim]{time.perf_counter() - start:6.1f}s[/dim] [bold]{step}[/bold] {message}",
                          highlight=False)

        yield on_event


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_parity(report: dict[str, Any]) -> None:
    """One row per artifact, batch and output: the metrics and whether the gate held."""
    table = Table(title="parity with eager PyTorch", title_justify="left")
    columns = ("artifact", "batch", "shape", "output", "max |Δ|", "max rel", "min cos", "pooled cos", "argmax",
               "non-finite", "result")
    for column in columns:
        numeric = column.startswith(("max", "min", "arg", "pooled", "non"))
        table.add_column(column, justify="right" if numeric else "left")
    for name, artifact in report["artifacts"].items():
        for batch in artifact["batches"]:
            shape = "x".join(map(str, batch["shape"]))
            for out in batch["outputs"]:
                result = ("[red]FAIL[/red]" if out["failures"] else
                          "[green]pass[/green]" if out.get("gated", True) else "[dim]info[/dim]")
                table.add_row(name, batch["batch"], shape, out["output"], _fmt(out["max_abs"], ".1e"),
                              _fmt(out["max_rel"], ".1e"), _fmt(out["min_cosine"], ".6f"),
                              _fmt(out.get("min_pooled_cosine"), ".6f"), _fmt(out["argmax_agreement"], ".3f"),
                              str(out.get("non_finite", 0)), result)
        if not artifact["batches"]:
            table.add_row(name, *["-"] * (len(columns) - 2), "[red]FAIL[/red]")
    Console(width=140).print(table)


def print_bench(report: dict[str, Any]) -> None:
    """Median with its interval, p90, speed-up over eager, throughput, GFLOP/s, memory and size per
    artifact and shape; the traffic passes; and how the recommendation was made."""
    settings = report["settings"]
    decision = report.get("decision") or {}
    level = f"{decision.get('confidence', 0.95):.0%}"
    table = Table(title=f"benchmark ({settings['threads']} threads, {settings['runs']} interleaved rounds, "
                        f"padding {settings['padding']:.0%})", title_justify="left")
    for column in ("artifact", "shape", "median ms", f"{level} interval", "p90 ms", "× eager", "seq/s", "GFLOP/s",
                   "peak +MB", "file MB"):
        table.add_column(column, justify="left" if column in ("artifact", "shape") else "right")
    for r in report["results"]:
        star = " ★" if r["artifact"] == report["recommended"] else ""
        ci = r.get("ci_ms")
        table.add_row(r["artifact"] + star, "x".join(map(str, r["shape"])), f"{r['p50_ms']:.1f}",
                      f"{ci[0]:.1f}–{ci[1]:.1f}" if ci else "-", f"{r['p90_ms']:.1f}",
                      f"{r['speedup_vs_eager']:.2f}", f"{r['throughput']:.1f}", f"{r['gflops']:.1f}",
                      _fmt(r["peak_extra_mb"], ".0f"), f"{r['file_mb']:.1f}")
    Console(width=140).print(table)
    traffic = report.get("traffic")
    if traffic:
        table = Table(title=f"real traffic ({traffic['texts']} texts from {traffic['source']}"
                            f"{', sorted longest first' if traffic['sort_by_length'] else ''}; each batch padded "
                            "to its own longest row)", title_justify="left")
        for column in ("artifact", "batch size", "batches", "ms per pass", f"{level} interval", "ms per batch",
                       "sentences/s", "× eager"):
            table.add_column(column, justify="left" if column == "artifact" else "right")
        for r in traffic["results"]:
            star = " ★" if r["artifact"] == report["recommended"] else ""
            table.add_row(r["artifact"] + star, str(r["batch_size"]), str(r["batches"]), f"{r['pass_ms']:.1f}",
                          f"{r['ci_ms'][0]:.1f}–{r['ci_ms'][1]:.1f}", f"{r['ms_per_batch']:.2f}",
                          f"{r['sentences_per_s']:.1f}", f"{r['speedup_vs_eager']:.2f}")
        Console(width=140).print(table)
    if decision:
        Console().print(f"recommended: {report['recommended'] or 'none (no artifact passed)'}, decided on the "
                        f"{decision['basis']}: {decision['reason']}", highlight=False)
    else:
        shape = "x".join(map(str, report["primary_shape"]))
        Console().print(f"recommended at {shape}: {report['recommended'] or 'none (no artifact passed)'}")


def print_summary(results: Any) -> None:
    """One row per recipe of a multi-recipe build."""
    table = Table(title="builds", title_justify="left")
    for column in ("recipe", "status", "seconds", "reused", "pushed", "error"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    colors = {"built": "green", "reused": "cyan", "failed": "red", "skipped": "yellow"}
    for r in results:
        table.add_row(r.recipe, f"[{colors.get(r.status, 'white')}]{r.status}[/]", f"{r.seconds:.1f}",
                      str(len(r.reused)), "yes" if r.pushed else "-", r.error or "")
    Console(width=160).print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("built", "reused", "failed", "skipped")}
    Console().print(", ".join(f"{n} {s}" for s, n in counts.items() if n))
