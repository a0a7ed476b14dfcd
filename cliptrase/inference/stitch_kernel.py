"""Stitching of voted windows (:func:`cliptrase.inference.window_scores.stitch_regions`) as two compiled
passes: the atoms (pixels with the same row of every window covering them) found by one scan of the image
with a hash table of row combinations, then each atom's rows added in the windows' order.

The PyTorch path builds one mixed-radix key per pixel (renumbered through ``torch.unique`` whenever it would
overflow int64) and sorts the keys; here a pixel whose combination equals its left neighbour's reuses its
atom, and only the others look theirs up. Atoms are numbered in order of first appearance (row-major) rather
than by key; a row's values, and so every label, do not depend on the numbering.

Compiled on first use and cached on disk by Numba (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = -1


@njit(cache=True, nogil=True)
def _hash(digits):
    value = np.uint64(14695981039346656037)
    for d in digits:
        value = (value ^ np.uint64(d + 1)) * np.uint64(1099511628211)
    return value


@njit(cache=True, nogil=True)
def _grow(keys, slots, n_atoms):
    """Twice the table, every atom's combination re-inserted."""
    capacity = 2 * slots.shape[0]
    new_keys = np.empty((capacity, keys.shape[1]), keys.dtype)
    new_keys[: keys.shape[0]] = keys
    new_slots = np.full(capacity, _EMPTY, np.int64)
    mask = np.uint64(capacity - 1)
    for atom in range(n_atoms):
        at = _hash(new_keys[atom]) & mask
        while new_slots[at] != _EMPTY:
            at = (at + np.uint64(1)) & mask
        new_slots[at] = atom
    return new_keys, new_slots


@njit(cache=True, nogil=True)
def atom_map(height, width, boxes, index, starts, atom):
    """Number the atoms of an image covered by windows.

    Args:
        height, width: the image size.
        boxes: (n, 4) int64 ``(y1, y2, x1, x2)`` of each window, in the canvas's order.
        index: every window's row ids, flattened row-major one after the other (any integer dtype).
        starts: (n,) int64 offset of each window's ids in ``index``.
        atom: (height, width) int32 output: each pixel's atom id.

    Returns:
        (number of atoms, (atoms,) int64 flat index of each atom's first pixel).
    """
    n = boxes.shape[0]
    capacity = 1024
    keys = np.empty((capacity, n), np.int64)  # combination of atom a: keys[a], 0 = not covered, else row + 1
    slots = np.full(capacity, _EMPTY, np.int64)
    first = np.empty(capacity, np.int64)
    n_atoms = 0
    digits = np.zeros(n, np.int64)
    covering = np.empty(n, np.int64)
    for y in range(height):
        n_cover = 0
        for i in range(n):
            if boxes[i, 0] <= y < boxes[i, 1]:
                covering[n_cover] = i
                n_cover += 1
        previous = _EMPTY
        for x in range(width):
            same = previous != _EMPTY
            for c in range(n_cover):
                i = covering[c]
                x1, x2 = boxes[i, 2], boxes[i, 3]
                d = 0
                if x1 <= x < x2:
                    d = index[starts[i] + (y - boxes[i, 0]) * (x2 - x1) + (x - x1)] + 1
                if d != digits[i]:
                    digits[i] = d
                    same = False
            if same:
                atom[y, x] = previous
                continue
            if previous == _EMPTY:  # the row's first pixel: the windows not covering the row are 0
                for i in range(n):
                    if not boxes[i, 0] <= y < boxes[i, 1]:
                        digits[i] = 0
            mask = np.uint64(slots.shape[0] - 1)
            at = _hash(digits) & mask
            found = _EMPTY
            while slots[at] != _EMPTY:
                candidate = slots[at]
                equal = True
                for i in range(n):
                    if keys[candidate, i] != digits[i]:
                        equal = False
                        break
                if equal:
                    found = candidate
                    break
                at = (at + np.uint64(1)) & mask
            if found == _EMPTY:
                if 2 * (n_atoms + 1) > slots.shape[0]:
                    keys, slots = _grow(keys, slots, n_atoms)
                    grown = np.empty(slots.shape[0], np.int64)
                    grown[:n_atoms] = first[:n_atoms]
                    first = grown
                    mask = np.uint64(slots.shape[0] - 1)
                    at = _hash(digits) & mask
                    while slots[at] != _EMPTY:
                        at = (at + np.uint64(1)) & mask
                found = n_atoms
                keys[found] = digits
                slots[at] = found
                first[found] = y * width + x
                n_atoms += 1
            atom[y, x] = found
            previous = found
    return n_atoms, first[:n_atoms].copy()


@njit(cache=True, nogil=True)
def atom_rows(first, width, boxes, index, starts, tables, table_starts, out):
    """Each atom's value: the rows of the windows covering its first pixel added in the windows' order
    from zero, then divided by their count, in float32 as the canvas computes it.

    Args:
        first: (A,) flat index of a pixel of each atom.
        width: the image width.
        boxes, index, starts: as :func:`atom_map`.
        tables: every window's rows, stacked (sum K_i, P) float32.
        table_starts: (n,) int64 first row of each window in ``tables``.
        out: (A, P) float32, zeros.

    Returns:
        The number of atoms no window covers (0 for a covered image).
    """
    n, n_prompts = boxes.shape[0], tables.shape[1]
    uncovered = 0
    for a in range(first.shape[0]):
        y, x = first[a] // width, first[a] % width
        count = np.float32(0.0)
        for i in range(n):
            y1, y2, x1, x2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
            if y1 <= y < y2 and x1 <= x < x2:
                row = table_starts[i] + index[starts[i] + (y - y1) * (x2 - x1) + (x - x1)]
                for p in range(n_prompts):
                    out[a, p] += tables[row, p]
                count += np.float32(1.0)
        if count == 0:
            uncovered += 1
            continue
        for p in range(n_prompts):
            out[a, p] /= count
    return uncovered
