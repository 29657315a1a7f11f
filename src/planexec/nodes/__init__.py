"""The graph's nodes, one module each: planner, review, executor, approval, replanner."""
