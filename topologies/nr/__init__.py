"""The NR cell model's configuration (config.py, profiles.py) and its socket-free runner (sim.py);
the model itself runs in the relay (topologies/links/relay/nrcell.c)."""
