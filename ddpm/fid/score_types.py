"""What each metric reports at one sample count N: plain dataclasses and their JSON form.

Torch- and numpy-free: the API reads stored results through these (ddpm.fid.results). Every field
that is absent from an older stored record reads as None, so old results load unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class FidInterval:
    """FID's sampling uncertainty at this N: a bootstrap over the generated features' rows."""

    low: float  # fid - z * se
    high: float  # fid + z * se
    se: float  # standard deviation of the bootstrap FIDs
    level: float  # e.g. 0.95
    replicates: int
    # Mean of the bootstrap FIDs. A resample repeats rows, which acts like a smaller N, so it lies above
    # the FID by about FID's own N-bias; the interval is therefore centred on the FID, not on this.
    bootstrap_mean: float


@dataclass(frozen=True)
class FidInfinity:
    """Chong & Forsyth's FID-infinity: FID at several N drawn from the sample set, fitted a + b/N."""

    value: float  # a: the intercept at 1/N = 0
    se: float | None  # standard error of the intercept from the fit's residuals (None with 2 points)
    slope: float  # b
    points: tuple[tuple[int, float], ...]  # (N_i, FID at N_i): what the line was fitted to

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FidInfinity:
        points = tuple((int(n), float(value)) for n, value in data.get("points") or ())
        return cls(float(data["value"]), _optional_float(data.get("se")), float(data["slope"]), points)


@dataclass(frozen=True)
class KidEstimate:
    """Kernel Inception Distance: the unbiased MMD^2, mean and std over subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall with k-nearest-neighbour manifolds."""

    precision: float
    recall: float
    k: int


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float  # over splits
    splits: int


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _load(kind: type, data: Any) -> Any:
    if data is None:
        return None
    if kind is FidInfinity:
        return FidInfinity.from_dict(data)
    return kind(**{f.name: data[f.name] for f in fields(kind)})


_METRIC_FIELDS: dict[str, type] = {
    "fid_interval": FidInterval,
    "fid_inf": FidInfinity,
    "kid": KidEstimate,
    "precision_recall": PrecisionRecall,
    "inception_score": InceptionScore,
}


@dataclass
class Scores:
    """Everything measured at one N (the first N of the one sample set)."""

    n: int
    fid: float  # pytorch-fid's number
    fid_interval: FidInterval | None = None
    fid_inf: FidInfinity | None = None
    kid: KidEstimate | None = None
    precision_recall: PrecisionRecall | None = None
    inception_score: InceptionScore | None = None
    warnings: list[str] = field(default_factory=list)  # about this N only

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"n": self.n, "fid": self.fid}
        for name in _METRIC_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = asdict(value)
        if isinstance(data.get("fid_inf"), dict):
            data["fid_inf"]["points"] = [list(point) for point in data["fid_inf"]["points"]]
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        """A stored `scores` row; rows written before these metrics existed hold only n and fid."""
        return cls(
            n=int(data["n"]),
            fid=float(data["fid"]),
            **{name: _load(kind, data.get(name)) for name, kind in _METRIC_FIELDS.items()},
            warnings=[str(w) for w in data.get("warnings") or []],
        )
