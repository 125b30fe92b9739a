"""The cache format, and its one owner: every module that knows how a cache is laid out.

``manifest`` (what a cache is), ``layout`` (where everything lives inside it, the names of
its files and keys), ``codec`` (how targets are stored), ``shards`` (reading a shard file),
``stats`` (per-channel target statistics), ``writer`` (laying out, filling and sealing a
folder), ``publisher`` (the same on an object store), ``mirror`` (reading one from an object
store), ``reader`` (``Cache``: a sealed cache opened for reading), ``verify``, ``describe``
and ``alignment`` (caches that share their views). ``extract/`` writes through ``writer``
and ``publisher``; ``train/`` and ``evaluate/`` read through ``reader``.
"""
