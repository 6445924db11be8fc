"""Photo in, emotions out: images and videos read safely, faces found, the run's own preprocessing."""
