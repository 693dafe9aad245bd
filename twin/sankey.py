"""Sankey diagram of sensitivities process -> structure -> performance (paper Figure 10): HTML and PNG.

The flows come from :func:`models.sensitivity.sankey_flows`. The HTML is an interactive plotly figure with the
plotly library embedded (it opens offline); the PNG is drawn with matplotlib from the same flows, so it needs
neither a browser nor network (plotly's static export would need Chrome through kaleido).

Link width is the magnitude of the ANCOVA index; a negative index (a correlated input whose effect cancels
another's, see the README) is drawn in red and labelled with its sign. Flows need not balance at the structure
nodes: the indices of two separate, non-linear models are not a conserved quantity (paper section 3.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_html", "write_png", "write_sankey"]

_LAYERS = ("process", "structure", "performance")
_LAYER_X = {"process": 0.02, "structure": 0.5, "performance": 0.98}
_NODE_COLOR = {"process": "#4C72B0", "structure": "#DD8452", "performance": "#55A868"}
_LINK_COLOR = {"process": "rgba(76,114,176,0.40)", "structure": "rgba(221,132,82,0.40)"}
_NEG_COLOR = "rgba(200,30,30,0.45)"


def _title(flows: Mapping, title: str | None) -> str:
    return title or f"Sensitivity flows ({flows['index']}): process -> structure -> performance"


def write_html(flows: Mapping, path: str | Path, title: str | None = None) -> Path:
    """Interactive Sankey diagram as a self-contained HTML file (plotly embedded, works offline)."""
    import plotly.graph_objects as go

    nodes = list(flows["nodes"])
    index = {n["name"]: i for i, n in enumerate(nodes)}
    layer = {n["name"]: n["layer"] for n in nodes}
    counts = {l: sum(1 for n in nodes if n["layer"] == l) for l in _LAYERS}
    seen = {l: 0 for l in _LAYERS}
    xs, ys = [], []
    for n in nodes:
        l = n["layer"]
        seen[l] += 1
        xs.append(_LAYER_X[l])
        ys.append(seen[l] / (counts[l] + 1))
    links = flows["links"]
    fig = go.Figure(go.Sankey(
        arrangement="snap",
        node=dict(label=[n["name"] for n in nodes], color=[_NODE_COLOR[n["layer"]] for n in nodes], x=xs, y=ys,
                  pad=12, thickness=16),
        link=dict(source=[index[l["source"]] for l in links], target=[index[l["target"]] for l in links],
                  value=[l["width"] for l in links],
                  customdata=[f"{l['value']:+.3f}" for l in links],
                  hovertemplate="%{source.label} -> %{target.label}: " + flows["index"] + " = %{customdata}"
                                "<extra></extra>",
                  color=[_NEG_COLOR if l["negative"] else _LINK_COLOR[layer[l["source"]]] for l in links]),
    ))
    fig.update_layout(title=_title(flows, title), font_size=12, height=620, margin=dict(b=110),
                      annotations=[dict(text=_wrap(flows["caveat"], 150).replace("\n", "<br>")
                                         + "<br>Red: negative index (drawn by its magnitude).",
                                    x=0, y=-0.16, xref="paper", yref="paper", showarrow=False, align="left",
                                    font=dict(size=11))])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def write_png(flows: Mapping, path: str | Path, title: str | None = None, dpi: int = 150) -> Path:
    """The same Sankey diagram as a PNG drawn with matplotlib (no browser, no network)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.path import Path as MPath

    nodes = list(flows["nodes"])
    links = list(flows["links"])
    layer = {n["name"]: n["layer"] for n in nodes}
    out_w = {n["name"]: 0.0 for n in nodes}
    in_w = {n["name"]: 0.0 for n in nodes}
    for l in links:
        out_w[l["source"]] += l["width"]
        in_w[l["target"]] += l["width"]
    size = {k: max(out_w[k], in_w[k], 0.03) for k in out_w}
    gap = 0.09
    col_total = {L: sum(size[n["name"]] for n in nodes if n["layer"] == L) for L in _LAYERS}
    col_n = {L: sum(1 for n in nodes if n["layer"] == L) for L in _LAYERS}
    height = max(col_total[L] + gap * max(col_n[L] - 1, 0) for L in _LAYERS) or 1.0
    xcol = {"process": 0.0, "structure": 1.0, "performance": 2.0}
    width = 0.06
    top = {}
    for L in _LAYERS:
        used = col_total[L] + gap * max(col_n[L] - 1, 0)
        y = height - (height - used) / 2.0
        for n in (n for n in nodes if n["layer"] == L):
            top[n["name"]] = y
            y -= size[n["name"]] + gap
    fig, ax = plt.subplots(figsize=(11, 6.5))
    out_cursor = dict(top)
    in_cursor = dict(top)
    order = sorted(links, key=lambda l: (list(top).index(l["source"]), list(top).index(l["target"])))
    for l in order:
        s, t, w = l["source"], l["target"], l["width"]
        x0 = xcol[layer[s]] + width / 2
        x1 = xcol[layer[t]] - width / 2
        y0 = out_cursor[s]
        y1 = in_cursor[t]
        out_cursor[s] -= w
        in_cursor[t] -= w
        xm = (x0 + x1) / 2
        verts = [(x0, y0), (xm, y0), (xm, y1), (x1, y1), (x1, y1 - w), (xm, y1 - w), (xm, y0 - w), (x0, y0 - w),
                 (x0, y0)]
        codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.LINETO, MPath.CURVE4,
                 MPath.CURVE4, MPath.CURVE4, MPath.CLOSEPOLY]
        if l["negative"]:
            color = (0.78, 0.12, 0.12, 0.45)
        else:
            color = (0.30, 0.45, 0.69, 0.35) if layer[s] == "process" else (0.87, 0.52, 0.32, 0.40)
        ax.add_patch(PathPatch(MPath(verts, codes), facecolor=color, edgecolor="none"))
        if w >= 0.04:
            ax.text(x1 - 0.03, y1 - w / 2, f"{l['value']:+.2f}", ha="right", va="center", fontsize=7,
                    color="0.25")
    for n in nodes:
        name, L = n["name"], n["layer"]
        ax.add_patch(Rectangle((xcol[L] - width / 2, top[name] - size[name]), width, size[name],
                               color=_NODE_COLOR[L]))
        ha, dx = ("right", -width) if L == "process" else ("left", width)
        ax.text(xcol[L] + dx, top[name] - size[name] / 2, name, ha=ha, va="center", fontsize=9)
    for L in _LAYERS:
        ax.text(xcol[L], height + 0.08, L, ha="center", va="bottom", fontsize=10, weight="bold")
    ax.set_xlim(-0.45, 2.45)
    ax.set_ylim(-0.05, height + 0.2)
    ax.axis("off")
    ax.set_title(_title(flows, title), fontsize=11)
    fig.text(0.02, 0.01, _wrap(flows["caveat"] + " Red: negative index, drawn by its magnitude; labels give the "
                               "signed index.", 170), fontsize=7.5, va="bottom")
    fig.subplots_adjust(bottom=0.12, top=0.92, left=0.02, right=0.98)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_sankey(flows: Mapping, html_path: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """Write ``FILE.html`` and, next to it, ``FILE.png``; returns both paths."""
    html = write_html(flows, html_path, title)
    png = write_png(flows, Path(html_path).with_suffix(".png"), title)
    return html, png
