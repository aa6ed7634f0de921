"""The benchmark harness behind `make bench` (issue 7, DESIGN section 8): `python -m bench.run`."""
