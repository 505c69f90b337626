"""Pipeline stages: one module per node, each a function (state, runtime) -> partial update."""
