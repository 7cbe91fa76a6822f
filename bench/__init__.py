"""The swarm benchmark (bench/swarm.py) and its helpers; see bench/README.md."""
