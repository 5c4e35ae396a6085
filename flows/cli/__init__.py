"""The ``pairsmith`` command line: one thin module per topic over the flows."""
