"""The swarm benchmark (`python -m bench.swarm`) and its helpers; see bench/README.md."""
