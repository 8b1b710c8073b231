"""The book's figure style: one colour and marker per method across every figure of a chapter, labelled axes, and
log axes ticked at the values that were measured.

    from book.plotting import Palette, use_book_style, ticks_at_measured
    use_book_style()
    palette = Palette(["softmax", "LSSA", "LSSAR p=3"])      # fixed for the whole chapter
    ax.plot(lengths, losses, label="LSSA", **palette("LSSA"))
    ticks_at_measured(ax, lengths, axis="x")                 # on a log axis: ticks 64, 128, ... not 10^2
"""
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, NullLocator

# Okabe and Ito's colours, told apart with every common colour-vision deficiency; their yellow is too pale on white,
# so the eighth is Tol's wine instead.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#882255")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


class Palette:
    """A fixed colour and marker for each method name, in the order given: the same method looks the same in
    every panel and figure of a chapter. palette(name) returns keyword arguments for ax.plot / ax.errorbar
    (color, marker); palette.color(name) the colour alone (bars, fills)."""

    def __init__(self, names):
        names = list(names)
        if len(set(names)) != len(names):
            raise ValueError(f"Palette: method names repeat: {names}")
        if len(names) > len(COLOURS):
            raise ValueError(f"Palette: {len(names)} methods, but only {len(COLOURS)} distinct colours; "
                             f"split the figure or group the methods")
        self.names = names

    def color(self, name):
        if name not in self.names:
            raise KeyError(f"Palette: no colour for {name!r}; the chapter's methods are {self.names}")
        return COLOURS[self.names.index(name)]

    def __call__(self, name):
        return dict(color=self.color(name), marker=MARKERS[self.names.index(name)])


def use_book_style():
    """Figure defaults for the book: readable sizes, a light grid, mathtext in the text's font."""
    plt.rcParams.update({
        "figure.figsize": (6.4, 4.0), "figure.dpi": 100, "savefig.bbox": "tight",
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "lines.linewidth": 1.6, "lines.markersize": 5, "mathtext.fontset": "dejavusans",
    })


def ticks_at_measured(ax, values, axis="x", fmt="{:g}"):
    """Put the major ticks of a (log) axis at the measured values, labelled in plain numbers, and drop the
    minor ticks: a reader sees 64, 256, 1024 where the points are, not 10^2 between them."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    values = sorted(set(values))
    target.set_major_locator(FixedLocator(values))
    target.set_minor_locator(NullLocator())
    target.set_ticklabels([fmt.format(v) for v in values])
