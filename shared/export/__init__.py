"""The pipeline's stages: what a run reads (plan), reading and hashing, the digests
gathered, adding, mirroring, sending, and the audience."""
