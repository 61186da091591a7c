"""fl-launch: plan a run, spawn Flower's SuperLink and SuperNodes, supervise, stop."""
