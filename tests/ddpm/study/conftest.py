"""The FID fixtures (Inception weights converted offline into a temporary TORCH_HOME), shared with ddpm/fid."""

from tests.ddpm.fid.conftest import _single_thread_blas, converted_weights, torch_home  # noqa: F401
