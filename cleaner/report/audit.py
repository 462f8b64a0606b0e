"""The report's "Shortcuts and provenance" section: ``audit.json`` as tables and small plots.

Plots are inline SVG made here (two bars per bin or category, real and fake, as shares of each
class so unequal classes compare), so the page needs no plotting library and no image file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from cleaner.audit.scores import typical
from cleaner.state.audit import Audit

PLOTS = 8
"""Properties plotted: the named ones first, then the strongest."""
COLORS = {"real": "#2b7bb9", "fake": "#e07b24"}
W, H, PAD = 320, 120, 18


def _bars(labels: Sequence[str], real: Sequence[float], fake: Sequence[float], title: str) -> str:
    """Grouped bars: per label, each class's share of its own files."""
    n = max(1, len(labels))
    slot = (W - 2 * PAD) / n
    bw = max(1.0, slot * 0.4)
    parts = [f'<svg class="plot" viewBox="0 0 {W} {H + 30}" role="img" width="{W}" '
             f'height="{H + 30}"><title>{escape(title)}</title>']  # fmt: skip
    top = max([*real, *fake, 1e-9])
    for i, lab in enumerate(labels):
        x0 = PAD + i * slot
        for j, (cls, v) in enumerate((("real", real[i]), ("fake", fake[i]))):
            h = (H - 10) * v / top
            parts.append(
                f'<rect x="{x0 + j * bw:.1f}" y="{H - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[cls]}"><title>{cls} {escape(lab)}: {v:.1%}</title></rect>'
            )
        if n <= 10:
            parts.append(f'<text x="{x0 + bw:.1f}" y="{H + 12}" font-size="9" '
                         f'text-anchor="middle">{escape(lab[:14])}</text>')  # fmt: skip
    parts.append(f'<line x1="{PAD}" y1="{H}" x2="{W - PAD}" y2="{H}" stroke="#888"/>')
    parts.append(
        f'<text x="{PAD}" y="{H + 26}" font-size="9" fill="{COLORS["real"]}">real</text>'
        f'<text x="{PAD + 30}" y="{H + 26}" font-size="9" fill="{COLORS["fake"]}">fake</text>'
    )
    return "".join(parts) + "</svg>"


def _share(counts: Sequence[int], total: int) -> list[float]:
    return [c / total if total else 0.0 for c in counts]


def plot(prop: Mapping[str, Any]) -> str:
    """The SVG of one property's per-class distribution ('' when there is nothing to draw)."""
    d = prop.get("distribution") or {}
    if "edges" in d:
        real, fake = d.get("real", {}), d.get("fake", {})
        if not real.get("n") or not fake.get("n"):
            return ""
        e = d["edges"]
        labels = [f"{e[i]:.3g}" for i in range(len(e) - 1)]  # each bin by its lower edge
        return _bars(labels, _share(real["hist"], real["n"]), _share(fake["hist"], fake["n"]),
                     prop["name"])  # fmt: skip
    top = d.get("top") or []
    n = d.get("n") or {}
    if not top:
        return ""
    labels = [str(t["value"]) or "(none)" for t in top]
    return _bars(labels, _share([t["real"] for t in top], n.get("real", 0)),
                 _share([t["fake"] for t in top], n.get("fake", 0)), prop["name"])  # fmt: skip


def audit_view(doc: Audit) -> dict[str, Any]:
    """Template data for the section."""
    props = list(doc.properties)
    rows = [
        {"name": p["name"], "kind": p["kind"], "auc": f"{p['auc']:.3f}",
         "power": f"{p['power']:.3f}", "interval": f"{p['low']:.3f}-{p['high']:.3f}",
         "named": p["named"], "real": typical(p, "real"), "fake": typical(p, "fake")}
        for p in props
    ]  # fmt: skip
    order = sorted(props, key=lambda p: (not p["named"], -p["power"]))
    plots = [{"name": p["name"], "svg": svg} for p in order[:PLOTS] if (svg := plot(p))]
    s = doc.shortcut
    prov = list(doc.provenance)
    prov.sort(key=lambda e: (not e.get("contradicts"), e.get("strength") != "proof", e["path"]))
    return {
        "verdict": s.get("verdict", ""),
        "shortcut": bool(s.get("shortcut")),
        "tiles": [
            ("shortcut AUC", f"{s.get('auc', 0.5):.3f}"),
            ("95% interval", f"{s.get('low', 0.5):.3f}-{s.get('high', 0.5):.3f}"),
            ("images", s.get("files", 0)),
            ("folds", s.get("folds", 0)),
        ],
        "rows": rows,
        "plots": plots,
        "provenance": prov[:500],
        "proofs": sum(1 for e in prov if e.get("strength") == "proof"),
        "contradicting": sum(
            1 for e in prov if e.get("strength") == "proof" and e.get("contradicts")
        ),
        "hostile": len(doc.hostile),
        "generated": doc.generated,
        "count": len(s.get("named") or []) + sum(1 for e in prov if e.get("contradicts")),
    }
