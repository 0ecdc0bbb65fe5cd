"""Images: the simulator image, base images from Debian packages, and (later) slimming and inspection."""
