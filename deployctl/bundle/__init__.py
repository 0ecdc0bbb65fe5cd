"""Offline bundles: images, weights, stack and wheels in one signed, checksummed, splittable bundle."""
