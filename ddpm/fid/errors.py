"""FID's own error: the evaluation cannot run here yet (weights or reference statistics missing)."""

from ddpm.errors import DdpmError


class FidUnavailable(DdpmError):
    """Inception weights or reference statistics are missing and cannot be built; the message says how."""
