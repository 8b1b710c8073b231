"""The Pointer Network tasks: the convex hull against scipy (qhull), areas, validity, coverage and accuracy.

Every reference here is independent of book.data.pointer_tasks: scipy.spatial.ConvexHull, argsort,
brute-force checks of points against half-planes, and polygons drawn by hand.
"""
import itertools

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from book.data.pointer_tasks import (PAD, area_coverage, convex_hull, convex_hull_batch, hull_target,
                                         is_simple_polygon, polygon_area, sequence_accuracy, sorting_batch)


def _is_rotation(seq, ref):
    seq, ref = list(seq), list(ref)
    return len(seq) == len(ref) and any(seq == ref[k:] + ref[:k] for k in range(len(ref)))


def _leftmost(points, indices):
    return min(indices, key=lambda i: (points[i][0], points[i][1], i))


def _point_sets():
    rng = np.random.default_rng(0)
    for n in [3, 4, 5, 7, 10, 20, 50]:
        for _ in range(15):
            yield rng.random((n, 2))
    for _ in range(60):  # small integer grids: many collinear points, duplicates, ties in x
        yield rng.integers(0, 4, size=(int(rng.integers(5, 15)), 2)).astype(np.float64)


def test_convex_hull_matches_scipy():
    for k, points in enumerate(_point_sets()):
        ours = convex_hull(points)
        if np.linalg.matrix_rank(points[1:] - points[0]) < 2:   # collinear: qhull refuses, the hull is a segment
            extremes = {min(map(tuple, points)), max(map(tuple, points))}
            assert {tuple(points[i]) for i in ours} == extremes, k
            continue
        ref = ConvexHull(points)
        # scipy's 2-D vertices are counter-clockwise; with duplicates it may name another copy of a point
        assert _is_rotation([tuple(points[i]) for i in ours], [tuple(points[i]) for i in ref.vertices]), k
        assert len(set(ours.tolist())) == len(ours), k
        first = ours[0]
        assert tuple(points[first]) == min(tuple(p) for p in points), k   # starts at the leftmost-lowest point
        assert first == min(i for i in range(len(points)) if tuple(points[i]) == tuple(points[first])), k
        assert polygon_area(points[ours]) == pytest.approx(ref.volume, rel=1e-12), k  # shoelace, CCW > 0


def test_hull_vertices_are_strictly_convex_and_enclose_every_point():
    rng = np.random.default_rng(1)
    for _ in range(50):
        points = rng.integers(0, 5, size=(12, 2)).astype(np.float64)
        hull = points[convex_hull(points)]
        if len(hull) < 3:
            continue
        for k in range(len(hull)):
            a, b = hull[k], hull[(k + 1) % len(hull)]
            turn = (b[0] - a[0]) * (points[:, 1] - a[1]) - (b[1] - a[1]) * (points[:, 0] - a[0])
            assert np.all(turn >= 0)                                       # every point left of or on each edge
            c = hull[(k + 2) % len(hull)]
            assert (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) > 0  # strict turns only


def test_degenerate_hulls():
    line = np.array([[2.0, 2.0], [0.0, 0.0], [1.0, 1.0], [3.0, 3.0], [1.0, 1.0]])
    assert convex_hull(line).tolist() == [1, 3]                            # the two end points
    assert convex_hull(np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])).tolist() == [0]
    assert convex_hull(np.array([[0.5, 0.5]])).tolist() == [0]
    vertical = np.array([[0.0, 3.0], [0.0, 1.0], [0.0, 2.0]])
    assert convex_hull(vertical).tolist() == [1, 0]
    square = np.array([[1.0, 1.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 0.0]])
    assert convex_hull(square).tolist() == [1, 3, 0, 4]                    # no edge midpoints, no second copy


def test_hull_target_is_a_closed_cycle_with_the_chosen_start():
    rng = np.random.default_rng(2)
    for _ in range(20):
        points = rng.random((8, 2))
        ref = ConvexHull(points).vertices.tolist()
        cycle = hull_target(points).tolist()
        assert cycle[0] == cycle[-1] == _leftmost(points, ref)
        assert _is_rotation(cycle[:-1], ref)
        cycle = hull_target(points, start="lowest_index").tolist()
        assert cycle[0] == cycle[-1] == min(ref) and _is_rotation(cycle[:-1], ref)
    with pytest.raises(ValueError, match="hull_target: start must be"):
        hull_target(points, start="top")


def test_batches_are_reproducible_and_padded():
    points, targets = convex_hull_batch(16, 9, np.random.default_rng(3))
    again, _ = convex_hull_batch(16, 9, np.random.default_rng(3))
    assert points.shape == (16, 9, 2) and points.dtype == np.float32 and targets.dtype == np.int64
    np.testing.assert_array_equal(points, again)
    for p, row in zip(points, targets):
        cycle = row[row != PAD]
        assert np.all(row[len(cycle):] == PAD) and cycle[0] == cycle[-1]
        assert _is_rotation(cycle[:-1], ConvexHull(p.astype(np.float64)).vertices)
    assert (targets[:, -1] != PAD).any()                                   # padded to the longest, no further
    values, order = sorting_batch(5, 7, np.random.default_rng(4))
    assert values.shape == (5, 7, 1) and order.shape == (5, 7)
    np.testing.assert_array_equal(order, np.argsort(values[..., 0], axis=1))
    with pytest.raises(ValueError, match="sorting_batch"):
        sorting_batch(4, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="convex_hull_batch"):
        convex_hull_batch(4, 2, np.random.default_rng(0))


def test_polygon_area_and_simplicity_by_hand():
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    assert polygon_area(square) == 2.0 and polygon_area(square[::-1]) == -2.0
    bowtie = square[[0, 2, 1, 3]]                                          # edges 0-2 and 1-3 cross
    assert is_simple_polygon(square) and not is_simple_polygon(bowtie)
    assert not is_simple_polygon(square[:2])                               # two vertices
    assert not is_simple_polygon(square[[0, 1, 2, 1]])                     # a repeated vertex
    spike = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 1.0]])     # 2 -> 1 runs back along 0 -> 2
    assert not is_simple_polygon(spike)
    touching = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [2.0, 0.0], [0.0, 4.0]])  # vertex 3 on edge 0-1
    assert not is_simple_polygon(touching)
    concave = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [2.0, 1.0], [0.0, 4.0]])
    assert is_simple_polygon(concave)
    with pytest.raises(ValueError, match=r"polygon_area: expected vertices of shape \(k, 2\)"):
        polygon_area(np.zeros((3, 3)))


def test_area_coverage():
    rng = np.random.default_rng(5)
    for _ in range(20):
        points = rng.random((10, 2))
        ref = ConvexHull(points)
        cycle = list(ref.vertices) + [ref.vertices[0]]
        assert area_coverage(points, cycle) == pytest.approx(1.0, rel=1e-12)
        assert area_coverage(points, cycle[::-1]) == pytest.approx(1.0, rel=1e-12)   # clockwise: same area
        assert area_coverage(points, cycle + [PAD, PAD]) == pytest.approx(1.0, rel=1e-12)
        assert np.isnan(area_coverage(points, cycle[:-1]))                 # not closed
        # every simple polygon on a subset of the points covers less than the hull: a triangle of hull vertices
        tri = [ref.vertices[0], ref.vertices[1], ref.vertices[2], ref.vertices[0]]
        (ax, ay), (bx, by) = points[tri[1]] - points[tri[0]], points[tri[2]] - points[tri[0]]
        want = abs(ax * by - ay * bx) / 2 / ref.volume
        assert area_coverage(points, tri) == pytest.approx(want, rel=1e-12) and want < 1
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    assert np.isnan(area_coverage(square, [0, 2, 1, 3, 0]))                # self-intersecting: invalid
    assert np.isnan(area_coverage(square, [0, 1, 0]))                      # two vertices: invalid
    with pytest.raises(ValueError, match="area_coverage: sequence must hold positions"):
        area_coverage(square, [0, 4, 0])


def test_simple_polygons_on_hull_points_by_enumeration():
    """Among all orderings of 5 points in convex position, only the 10 rotations/reflections of the hull are
    simple (a pentagon's other orders cross), and only they cover the hull."""
    angles = np.sort(np.random.default_rng(6).uniform(0, 2 * np.pi, 5))
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    simple = [p for p in itertools.permutations(range(5)) if is_simple_polygon(points[list(p)])]
    assert len(simple) == 10 and all(_is_rotation(p, range(5)) or _is_rotation(p[::-1], range(5)) for p in simple)


def test_sequence_accuracy():
    targets = np.array([[0, 1, 2, 0], [2, 1, 2, PAD]])
    assert sequence_accuracy(targets, targets) == 1.0
    assert sequence_accuracy(np.array([[0, 1, 2, 0, PAD], [2, 1, 2, PAD, PAD]]), targets) == 1.0  # widths differ
    assert sequence_accuracy(np.array([[0, 1, 2, 0], [2, 1, 2, 1]]), targets) == 0.5   # too long
    assert sequence_accuracy(np.array([[0, 1, 2], [2, 1, 2]]), targets) == 0.5         # too short
    with pytest.raises(ValueError, match="sequence_accuracy: expected predicted"):
        sequence_accuracy(np.zeros((2, 3), int), np.zeros((3, 3), int))
