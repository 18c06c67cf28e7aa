"""The pipeline's stages, each written once: what a run reads (plan), the read, the digest
pool, adding, mirroring, sending, and the audience; ``pipeline`` drives them on one instance
(``shared.runs.split`` drives the same stages over several)."""
