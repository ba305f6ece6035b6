"""Fan-out: one image into many hosts' caches, the hosts passing it on to each other in pipelined chains of their
own OpenSSH and coreutils (plan, hop scripts, agent, the head's links, the runner, measured rates)."""

ACTION = "WARM"  # what a fan-out's lines (one per host) are called in its run's events
