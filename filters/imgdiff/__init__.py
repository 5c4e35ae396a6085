"""Img-Diff's filters: pure keep/drop rules over stored scores, their thresholds and stage declarations."""
