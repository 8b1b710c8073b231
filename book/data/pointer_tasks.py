"""Tasks whose answer is a sequence of input positions, for Pointer Networks: sorting and the planar convex hull.

Every random draw comes from a NumPy Generator passed in (`rng`). Batches hold inputs of one length n; targets
are int64 input positions, padded with PAD = -1 after a row's end.

Sorting: n floats uniform in [0, 1), the target is their argsort (ascending): a permutation, n steps.

Convex hull: n points uniform in [0, 1)^2, the target is the hull as a closed cycle, counter-clockwise, starting at
the leftmost point (lowest x, ties broken by lowest y) and pointing back to it at the end:
    C = (c_1, c_2, ..., c_k, c_1),  k hull vertices, so a row has k + 1 steps (padded to the longest in the batch).
Leftmost is a property of the points alone, so the first output is learnable; the paper started at the point with
the lowest index instead (`hull_target(..., start="lowest_index")`).

The hull is Andrew's monotone chain (1979): sort the points by (x, y), build the lower hull left to right and the
upper hull right to left, popping the last point while it does not make a strict left turn,
    cross(o, a, b) = (a_x - o_x)(b_y - o_y) - (a_y - o_y)(b_x - o_x) <= 0,
so points on a hull edge are not vertices. Duplicate points count once (the lowest index). If all points are
collinear the hull is its two end points (one point if all coincide).

Area coverage (the paper's "area" metric). For a predicted sequence S over the points of one example:
    valid(S)   = S is a closed cycle (its last entry repeats its first), the polygon S[:-1] has >= 3 vertices,
                 no vertex repeated, and is simple: no two non-adjacent edges meet (touching counts), and no two
                 adjacent edges overlap (fold back on one line);
    coverage(S) = |shoelace area of S[:-1]| / area of the true hull   if valid(S), else undefined (NaN).
Every valid polygon lies inside the hull, so coverage is in (0, 1], and 1 only for the hull itself (in either
orientation). Invalid outputs are failures: report their fraction next to the mean coverage of the valid ones.
"""
from minigrad.backend import np

PAD = -1


# ---- sorting --------------------------------------------------------------------------------

def sorting_batch(batch_size, n, rng, dtype=np.float32):
    """-> points (B, n, 1) uniform in [0, 1), targets (B, n) int64: the positions in ascending order of value."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"sorting_batch: need batch_size >= 1 and n >= 1, got {batch_size} and {n}")
    values = rng.random((batch_size, n))
    return values[:, :, None].astype(dtype), np.argsort(values, axis=1, kind="stable").astype(np.int64)


# ---- geometry -------------------------------------------------------------------------------

def _check_points(op, points):
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 1:
        raise ValueError(f"{op}: expected points of shape (n >= 1, 2), got {points.shape}")
    return points.astype(np.float64)


def cross(o, a, b):
    """z-component of (a - o) x (b - o): > 0 for a left (counter-clockwise) turn o -> a -> b, 0 when collinear."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points):
    """Indices of the hull's vertices, counter-clockwise, starting at the leftmost(-lowest) point. points (n, 2)."""
    p = _check_points("convex_hull", points)
    order = np.lexsort((np.arange(len(p)), p[:, 1], p[:, 0]))        # by x, then y, then index
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.any(p[order[1:]] != p[order[:-1]], axis=1)          # a duplicate after its first copy goes
    order = order[keep]
    if len(order) <= 2:
        return order.astype(np.int64)

    def half(indices):
        chain = []
        for i in indices:
            while len(chain) >= 2 and cross(p[chain[-2]], p[chain[-1]], p[i]) <= 0:
                chain.pop()
            chain.append(int(i))
        return chain

    lower, upper = half(order), half(order[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.int64)         # each chain's last point starts the other


def hull_target(points, start="leftmost"):
    """The hull as a closed cycle (c_1, ..., c_k, c_1), counter-clockwise. start: "leftmost" (lowest x, then
    lowest y) or "lowest_index" (the paper's choice)."""
    hull = convex_hull(points)
    if start == "lowest_index":
        hull = np.roll(hull, -int(np.argmin(hull)))
    elif start != "leftmost":
        raise ValueError(f"hull_target: start must be 'leftmost' or 'lowest_index', got {start!r}")
    return np.concatenate([hull, hull[:1]])


def convex_hull_batch(batch_size, n, rng, start="leftmost", dtype=np.float32):
    """-> points (B, n, 2) uniform in [0, 1)^2, targets (B, T) int64 closed hull cycles, PAD-padded to the longest."""
    if n < 3 or batch_size < 1:
        raise ValueError(f"convex_hull_batch: need batch_size >= 1 and n >= 3, got {batch_size} and {n}")
    points = rng.random((batch_size, n, 2)).astype(dtype)
    cycles = [hull_target(p, start) for p in points]                 # hull of the points as stored (dtype)
    targets = np.full((batch_size, max(len(c) for c in cycles)), PAD, dtype=np.int64)
    for row, c in zip(targets, cycles):
        row[:len(c)] = c
    return points, targets


def polygon_area(vertices):
    """Signed shoelace area of the polygon (k, 2): 1/2 sum_i (x_i y_{i+1} - x_{i+1} y_i); > 0 counter-clockwise."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2:
        raise ValueError(f"polygon_area: expected vertices of shape (k, 2), got {v.shape}")
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _on_segment(a, b, q):
    """q, known to be collinear with a and b, lies within the closed segment ab."""
    return min(a[0], b[0]) <= q[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= q[1] <= max(a[1], b[1])


def segments_intersect(a, b, c, d):
    """The closed segments ab and cd share at least one point (crossing, touching or overlapping)."""
    d1, d2, d3, d4 = cross(c, d, a), cross(c, d, b), cross(a, b, c), cross(a, b, d)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and ((d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)):
        return True
    return ((d1 == 0 and _on_segment(c, d, a)) or (d2 == 0 and _on_segment(c, d, b))
            or (d3 == 0 and _on_segment(a, b, c)) or (d4 == 0 and _on_segment(a, b, d)))


def is_simple_polygon(vertices):
    """>= 3 vertices, no vertex repeated, no two non-adjacent edges meet, no adjacent edges folding back."""
    v = np.asarray(vertices, dtype=np.float64)
    k = len(v)
    if k < 3 or len(np.unique(v, axis=0)) < k:
        return False
    edges = [(v[i], v[(i + 1) % k]) for i in range(k)]
    for i in range(k):
        a, b = edges[i]
        c = edges[(i + 1) % k][1]                      # the next edge is b -> c
        if cross(a, b, c) == 0 and np.dot(b - a, c - b) < 0:
            return False                               # b -> c runs back along a -> b
        for j in range(i + 2, k):
            if i == 0 and j == k - 1:
                continue                               # the last edge is adjacent to the first
            if segments_intersect(*edges[i], *edges[j]):
                return False
    return True


def area_coverage(points, sequence):
    """|area of the predicted polygon| / area of the true hull, or NaN when the prediction is not valid (see the
    module docstring). points (n, 2); sequence: input positions, PAD entries at the end are ignored."""
    p = _check_points("area_coverage", points)
    s = np.asarray(sequence, dtype=np.int64)
    s = s[s != PAD]
    if s.ndim != 1 or (s.size and (s.min() < 0 or s.max() >= len(p))):
        raise ValueError(f"area_coverage: sequence must hold positions in [0, {len(p)}) and PAD, got {sequence!r}")
    if len(s) < 4 or s[0] != s[-1] or not is_simple_polygon(p[s[:-1]]):
        return float("nan")
    hull_area = abs(polygon_area(p[convex_hull(p)]))
    if hull_area == 0:
        return float("nan")
    return abs(polygon_area(p[s[:-1]])) / hull_area


# ---- metrics --------------------------------------------------------------------------------

def sequence_accuracy(predicted, targets):
    """Fraction of rows whose predicted sequence equals the target exactly (PAD entries ignored, lengths count).

    predicted (B, T1), targets (B, T2): int arrays (or tensors), PAD (any negative) after a row's end."""
    pred, true = (np.asarray(getattr(a, "data", a)) for a in (predicted, targets))
    if pred.ndim != 2 or true.ndim != 2 or len(pred) != len(true):
        raise ValueError(f"sequence_accuracy: expected predicted (B, T1) and targets (B, T2) with the same B, got "
                         f"{pred.shape} and {true.shape}")
    width = max(pred.shape[1], true.shape[1])
    pred, true = (np.pad(np.where(a < 0, PAD, a), ((0, 0), (0, width - a.shape[1])), constant_values=PAD)
                  for a in (pred, true))
    return float(np.mean(np.all(pred == true, axis=1)))
