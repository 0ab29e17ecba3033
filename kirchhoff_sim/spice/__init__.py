"""SPICE back end: write netlists, run them in ngspice, read the results back as arrays."""
