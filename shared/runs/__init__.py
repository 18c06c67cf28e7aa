"""Runs as units of work: starting and queueing them, one attempt on a worker, the export's
lock, the run's record, and a run split over instances."""
