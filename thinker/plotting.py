"""Matplotlib for the pictures the project draws (study, curves, benchmarks), without a display.

    plt = pyplot()  # imported on first use only: commands that draw nothing never load matplotlib
"""

from __future__ import annotations


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (files, no window; works over ssh and in containers)."""
    import matplotlib  # noqa: PLC0415 - only when something is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt
