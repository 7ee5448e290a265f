"""The botmon benchmark: botmon and a minimal reference server, side by side.

`python -m bench` starts both servers on loopback, runs every scenario against
each, prints one table and writes the figures as JSON lines to bench/results/.
"""
