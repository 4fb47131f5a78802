"""Command-line progress bars on stderr that never print an empty frame.

tqdm draws a bar the moment it is created, so a bar made before its phase has done anything prints a
0% line that the first real update then replaces (a stray frame before each bar in a log or a pipe).
Bars here are made at a phase's first report that counts work, with a tiny `delay` so even that
creation draws nothing until the bar has moved.
"""

from __future__ import annotations

import sys
from typing import Any

FIRST_FRAME_DELAY_S = 1e-9  # tqdm draws nothing before the first update after this delay


def new_bar(**options: Any) -> Any:
    """A tqdm bar on stderr that draws its first frame only once it has moved."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, delay=FIRST_FRAME_DELAY_S, **options)


class PhaseBars:
    """One bar per phase of a `progress(phase, done, total)` callback (the FID evaluator, the classifier
    analysis); a new phase closes the bar before it."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.bars:
            if done <= 0:  # the phase has only started: its bar is made when it first moves
                return
            for bar in self.bars.values():
                bar.close()
            self.bars[phase] = new_bar(total=total, desc=phase)
        bar = self.bars[phase]
        bar.total = total
        if done != bar.n:
            bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
