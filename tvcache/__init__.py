"""tvcache: a stateful tool-value cache with container forking for RL post-training."""
