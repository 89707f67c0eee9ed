"""ISL stage: the +Grid laser inter-satellite link graph and shortest paths over it.

+Grid: every satellite links to its two neighbours in the same plane and to the satellite with the
same slot number in each adjacent plane (4 ISLs per satellite), the topology used for Starlink-like
shells by Hypatia (Kassing et al., IMC 2020) and Bhattacherjee & Singla (CoNEXT 2019).
Edge weights are ISL lengths in km at one instant; paths are recomputed at reconfiguration instants.
"""

from __future__ import annotations

import heapq

import numpy as np


def plus_grid_edges(planes: int, sats_per_plane: int) -> np.ndarray:
    """Undirected +Grid edges ``(E, 2)`` (sat index = plane * sats_per_plane + slot)."""
    idx = np.arange(planes * sats_per_plane).reshape(planes, sats_per_plane)
    intra = np.stack([idx.ravel(), np.roll(idx, -1, axis=1).ravel()], axis=1)
    inter = np.stack([idx.ravel(), np.roll(idx, -1, axis=0).ravel()], axis=1)
    edges = np.concatenate([intra if sats_per_plane > 2 else intra[:0], inter if planes > 2 else inter[:0]])
    edges = np.sort(edges, axis=1)
    return np.unique(edges, axis=0)


def isl_lengths_km(positions_km: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Length (km) of every edge for positions ``(N, 3)`` (any frame)."""
    return np.linalg.norm(positions_km[edges[:, 0]] - positions_km[edges[:, 1]], axis=1)


def adjacency(n_nodes: int, edges: np.ndarray, weights_km: np.ndarray) -> list[list[tuple[int, float]]]:
    """Adjacency lists with weights, for :func:`shortest_paths_km`."""
    adj: list[list[tuple[int, float]]] = [[] for _ in range(n_nodes)]
    for (a, b), w in zip(edges.tolist(), weights_km.tolist(), strict=True):
        adj[a].append((b, w))
        adj[b].append((a, w))
    return adj


def shortest_paths_km(adj: list[list[tuple[int, float]]], source: int) -> tuple[np.ndarray, np.ndarray]:
    """Dijkstra from ``source``: (distance_km per node, predecessor per node, -1 if none)."""
    n = len(adj)
    dist = np.full(n, np.inf)
    prev = np.full(n, -1, dtype=np.int64)
    dist[source] = 0.0
    heap = [(0.0, source)]
    done = np.zeros(n, dtype=bool)
    while heap:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        for v, w in adj[u]:
            nd = d + w
            if nd < dist[v]:
                dist[v] = nd
                prev[v] = u
                heapq.heappush(heap, (nd, v))
    return dist, prev


def path_to(prev: np.ndarray, source: int, target: int) -> list[int]:
    """Node list source..target from a predecessor array (empty if unreachable)."""
    path = [target]
    while path[-1] != source:
        p = int(prev[path[-1]])
        if p < 0:
            return []
        path.append(p)
    return path[::-1]


def path_length_km(positions_km: np.ndarray, path: list[int]) -> np.ndarray:
    """Length (km) of a fixed path over positions ``(T, N, 3)`` -> ``(T,)`` (0 for one node)."""
    if len(path) < 2:
        return np.zeros(positions_km.shape[0])
    p = positions_km[:, path, :]
    return np.linalg.norm(np.diff(p, axis=1), axis=-1).sum(axis=1)
