"""Code shared by the extract and train stages: teachers, the renderer, the cache format."""
