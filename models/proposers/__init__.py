"""Weight-free change proposers for image pairs: registration, photometric fit, change maps, region merging, the extent verdict and the diff-map proposer."""
