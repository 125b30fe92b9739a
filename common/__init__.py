"""Code shared by the stages, one sub-package per concept, in layer order (each imports only
the ones before it; tests/test_packaging.py holds the order):

runtime   errors, version, files, faults, progress, prefetch, distributed, plugins
storage   object stores and the node's shard cache
data      image sources (folders, lists, tar shards), image probing, the image table
views     view records, RandAugment, the DALI renderer
cache     the cache format, its one owner: manifest, layout, codecs, writer, reader, …
models    teachers, students, heads
runs      the run folder, checkpoints, logs, the records they share
"""

from proteus.common.runtime import moved as _moved

_moved.install()  # 0.2's import paths keep working for one release
