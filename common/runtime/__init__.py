"""Plumbing every layer uses: errors, the version, atomic files, failpoints, progress bars,
prefetching, processes, plugins, and the aliases of moved modules."""
