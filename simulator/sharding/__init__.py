"""One simulation split across Ray actors (shards) that step in bulk-synchronous lockstep, with
the same result bit for bit as one process.

- `planning`: how a run is split: the shards' id ranges, the rules grouped into segments and what
  each segment sends, how many shards a run gets and what state they hold;
- `replicated`: a shard holding the whole state, computing rules only for its own agents;
- `partitioned`: a shard holding only its own agents and their network neighbors (its halo);
- `checkpoints`: what a shard of either kind saves and restores;
- `actors`: the Ray actor around one shard, one method per phase of a round;
- `coordinator`: `ShardedRun`, which drives the actors round by round, and the runs of an experiment.
"""
