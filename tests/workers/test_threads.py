"""A worker's pool process sets its thread counts from the settings, not from what fork left it."""

from __future__ import annotations

import os

import torch
from threadpoolctl import threadpool_info, threadpool_limits

from jobs.settings import Settings
from workers.app import apply_threads


def test_threads_come_from_the_setting_or_the_cores_this_process_may_use() -> None:
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS pools' counts on exit
        try:
            assert "1 torch and BLAS threads (DDPM_THREADS)" in apply_threads(1)
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
            cores = len(os.sched_getaffinity(0))
            assert f"{cores} torch and BLAS threads (the cores" in apply_threads(None)
            assert torch.get_num_threads() == cores
        finally:
            torch.set_num_threads(before)


def test_the_threads_setting_is_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("DDPM_THREADS", "3")
    assert Settings().threads == 3
    monkeypatch.delenv("DDPM_THREADS")
    assert Settings().threads is None
