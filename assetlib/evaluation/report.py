"""An evaluation's results as people read them: metrics.json, results.csv, the comparison table, figures.

Light on purpose: the dashboard's metrics tab reads reports through this module, so it imports no
store, no search and no model code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assetlib.records import write_csv, write_json
from assetlib.vocab import MODE_TITLES, Mode

TOP_K = 50  # ranking depth kept per query (recall@k curves go to 50)
REPORT_FILES = ("metrics.json", "results.csv", "recall_at_k.png", "per_category.png")
DEFINITIONS = (
    "r@k = a relevant asset in the top k (hit rate); recall@k = share of relevant assets in the top k; "
    "mrr; map; ndcg@10 (binary gains); see assetlib/evaluation/metrics.py"
)


@dataclass
class EvalReport:
    """The comparison table, recall@k curves, per-category recall and where the files are."""

    rows: list[dict]
    curves: dict[str, list[float]]
    per_category: dict[str, dict[str, float]]
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)


def write_report(report: EvalReport, query_source: str, seed: int) -> None:
    """Write metrics.json, results.csv and the figures of an evaluation into its folder."""
    out = report.out_dir
    write_json(
        out / "metrics.json",
        {
            "definitions": DEFINITIONS,
            "query_source": query_source,
            "seed": seed,
            "rows": report.rows,
            "curves": report.curves,
            "per_category": report.per_category,
        },
    )
    write_csv(report.rows, out / "results.csv")
    report.files = {"metrics": str(out / "metrics.json"), "table": str(out / "results.csv")}
    report.files.update(plot_report(report))


def plot_report(report: EvalReport) -> dict[str, str]:
    """recall@k curves and per-category bars, saved as PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assetlib.media.preview import use_cjk_font

    use_cjk_font()
    files = {}
    panels = [("text", "in-grammar"), ("text", "natural"), ("image", "in-grammar")]
    if not any(r.get("query_set") == "natural" for r in report.rows):
        panels.remove(("text", "natural"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), sharey=True)
    for ax, (kind, query_set) in zip(axes, panels, strict=True):
        for row in report.rows:
            if row["kind"] == kind and row.get("query_set", "in-grammar") == query_set:
                ax.plot(range(1, TOP_K + 1), report.curves[row["label"]], label=row["label"], lw=1.2)
        ax.set(
            xlabel="k",
            ylabel="recall@k (a relevant asset in the top k)",
            title=f"{kind} queries ({query_set})",
            xscale="log",
            ylim=(0, 1.02),
        )
        if ax.lines:
            ax.legend(fontsize=6.5, ncol=1)
        else:
            ax.text(
                0.5, 0.5, f"no {kind} queries evaluated", ha="center", va="center", transform=ax.transAxes
            )
    fig.tight_layout()
    files["recall_at_k"] = str(report.out_dir / "recall_at_k.png")
    fig.savefig(files["recall_at_k"], dpi=110)
    plt.close(fig)
    best = _best_per_algorithm(report.rows, kind="text", mode="text_to_image")
    if best:
        cats = sorted({c for label in best for c in report.per_category[label]})
        fig, ax = plt.subplots(figsize=(13, 4))
        width = 0.8 / len(best)
        for i, label in enumerate(best):
            values = [report.per_category[label].get(c, 0.0) for c in cats]
            ax.bar(np.arange(len(cats)) + i * width, values, width, label=label)
        ax.set_xticks(np.arange(len(cats)) + width * (len(best) - 1) / 2, cats, rotation=60, fontsize=8)
        ax.set(ylabel="r@10", title="text→image recall@10 per category", ylim=(0, 1.05))
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["per_category"] = str(report.out_dir / "per_category.png")
        fig.savefig(files["per_category"], dpi=110)
        plt.close(fig)
    return files


def _best_per_algorithm(rows: list[dict], kind: str, mode: str) -> list[str]:
    best: dict[str, dict] = {}
    for row in rows:
        if (
            row["kind"] == kind
            and row.get("query_set", "in-grammar") == "in-grammar"
            and row["mode"] == mode
            and row.get("r@10", 0) >= best.get(row["algorithm"], {}).get("r@10", -1)
        ):
            best[row["algorithm"]] = row
    return [r["label"] for r in best.values()]


COMPARISON_COLUMNS = (
    "algorithm",
    "queries",
    "set",
    "mode",
    "layout",
    "lang",
    "r@1",
    "r@5",
    "r@10",
    "recall@10",
    "p@10",
    "MRR",
    "mAP",
    "nDCG@10",
    "p50 ms",
)


def comparison_cells(row: dict, readable_modes: bool = False) -> list[str]:
    """One row of the comparison, formatted, in COMPARISON_COLUMNS order (Markdown and the dashboard).

    The layout column says what the layout means for that encoder ("pooled: …", "mean of views
    only", "fused views"); `readable_modes` writes modes as the dashboard names them.
    """
    keys = ("r@1", "r@5", "r@10", "recall@10", "precision@10", "mrr", "map", "ndcg@10")
    # Reports written before precision@10 existed show a dash there.
    metrics = [f"{row[k]:.3f}" if k in row else "–" for k in keys]
    mode = MODE_TITLES[Mode(row["mode"])] if readable_modes else row["mode"]
    return [
        row["algorithm"],
        row["kind"],
        row.get("query_set", "in-grammar"),
        mode,
        row.get("layout_label") or row.get("layout") or "–",
        row.get("language") or "–",
        *metrics,
        f"{row['latency_p50_ms']:.1f}",
    ]


def fusion_gains(rows: list[dict]) -> list[dict]:
    """Per algorithm, query kind and language: the best single mode's r@10 against the best fused one."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["algorithm"], row["kind"], row.get("language"), row.get("query_set", "in-grammar"))
        groups.setdefault(key, []).append(row)
    out = []
    for (algorithm, kind, language, query_set), group in groups.items():
        fused = [r for r in group if r["mode"] == Mode.FUSED]
        single = [r for r in group if r["mode"] != Mode.FUSED]
        if fused and single:
            best = max(single, key=lambda r: r["r@10"])
            fused_best = max(r["r@10"] for r in fused)
            layout = best.get("layout_label") or best.get("layout") or "-"
            out.append(
                {
                    "algorithm": algorithm,
                    "queries": kind,
                    "set": query_set,
                    "language": language,
                    "best single mode": f"{best['mode']} ({layout})",
                    "single r@10": best["r@10"],
                    "fused r@10": fused_best,
                    "fused − single": round(fused_best - best["r@10"], 4),
                }
            )
    return out


def natural_language_table(rows: list[dict]) -> list[dict]:
    """Per algorithm, text mode and language: the natural-language set beside the in-grammar one.

    Each row is the layout that answered the natural queries best (by hit@10): hit@10,
    precision@10 and MRR on the natural set, and hit@10 and precision@10 on the in-grammar set in
    the same configuration. Empty when the evaluation had no natural set.
    """
    in_grammar = {
        (r["algorithm"], r["mode"], r.get("layout"), r.get("language")): r
        for r in rows
        if r["kind"] == "text" and r.get("query_set", "in-grammar") == "in-grammar"
    }
    best: dict[tuple, dict] = {}
    for row in rows:
        if row.get("query_set") != "natural":
            continue
        key = (row["algorithm"], row["mode"], row.get("language"))
        if row["r@10"] > best.get(key, {}).get("r@10", -1):
            best[key] = row
    out = []
    for (algorithm, mode, language), row in sorted(
        best.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])
    ):
        same = in_grammar.get((algorithm, mode, row.get("layout"), language), {})
        out.append(
            {
                "algorithm": algorithm,
                "mode": mode,
                "layout": row.get("layout_label") or row.get("layout") or "–",
                "language": language,
                "natural hit@10": row["r@10"],
                "natural precision@10": row.get("precision@10"),
                "natural MRR": row["mrr"],
                "natural queries": row["queries"],
                "in-grammar hit@10": same.get("r@10"),
                "in-grammar precision@10": same.get("precision@10"),
            }
        )
    return out


def best_for_natural_queries(rows: list[dict]) -> tuple[str, str] | None:
    """(algorithm, mode) whose text searches answered the natural-language set best, by hit@10 and
    then precision@10 averaged over languages; None without a natural set."""
    scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in natural_language_table(rows):
        precision = row["natural precision@10"] or 0.0
        scores.setdefault((row["algorithm"], row["mode"]), []).append((row["natural hit@10"], precision))
    if not scores:
        return None
    return max(scores, key=lambda key: tuple(float(np.mean(v)) for v in zip(*scores[key], strict=True)))


def comparison_table(rows: list[dict]) -> str:
    """The comparison as a Markdown table (for notebooks, notes and the README)."""
    lines = ["| " + " | ".join(COMPARISON_COLUMNS) + " |", "|" + " --- |" * len(COMPARISON_COLUMNS)]
    lines += ["| " + " | ".join(comparison_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def find_latest_metrics(root: Path) -> Path | None:
    """The newest metrics.json under a folder of runs (None when nothing was evaluated yet)."""
    if not root.is_dir():
        return None
    found = [p for p in root.rglob("metrics.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def read_report(metrics_path: Path) -> EvalReport:
    """An evaluation read back from its metrics.json, with its figures (redrawn when missing)."""
    data = json.loads(metrics_path.read_text(encoding="utf-8"))
    report = EvalReport(data["rows"], data["curves"], data.get("per_category", {}), metrics_path.parent)
    report.files = {"metrics": str(metrics_path)}
    figures = {name: metrics_path.parent / f"{name}.png" for name in ("recall_at_k", "per_category")}
    curves = figures["recall_at_k"]
    if not curves.is_file() or curves.stat().st_mtime < metrics_path.stat().st_mtime:
        report.files.update(plot_report(report))
    else:
        report.files.update({name: str(p) for name, p in figures.items() if p.is_file()})
    return report
