"""skiffd's image builder (the classic builder behind POST /build).

dockerfile (parse) -> stages (plan) -> builder (execute each step over the
supervisor, reusing the cache); context and dockerignore read what the
client uploaded, and nothing in them can reach outside the context.
"""
