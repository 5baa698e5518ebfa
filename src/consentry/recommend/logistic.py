"""L2-regularised logistic regression fitted by Newton's method (pure numpy), for the hybrid's
learned score and for calibrating any model's scores into probabilities (Platt scaling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
from numpy.typing import ArrayLike

from consentry.recommend._arrays import FloatArray


def sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


@dataclass(frozen=True)
class LogisticModel:
    """P(y=1 | x) = sigmoid(intercept + ((x - mean) / scale) . coef)."""

    coef: FloatArray
    intercept: float
    mean: FloatArray
    scale: FloatArray

    @classmethod
    def fit(
        cls,
        features: ArrayLike,
        labels: ArrayLike,
        *,
        l2: float = 1.0,
        iterations: int = 50,
        tolerance: float = 1e-8,
    ) -> Self:
        """Fit on rows of features and 0/1 labels; ``l2`` penalises the (standardised)
        coefficients, not the intercept."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.size or y.size == 0:
            raise ValueError("features must be (rows, columns) with one label per row")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = np.hstack([np.ones((y.size, 1)), (x - mean) / scale])
        weights = np.zeros(z.shape[1])
        prior = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        weights[0] = np.log(prior / (1 - prior))
        penalty = np.full(z.shape[1], l2)
        penalty[0] = 0.0

        def loss(w: FloatArray) -> float:
            margin = z @ w
            # log(1 + exp(m)) - y * m, computed stably
            value = np.logaddexp(0.0, margin) - y * margin
            return float(value.sum() + 0.5 * (penalty * w * w).sum())

        current = loss(weights)
        for _ in range(iterations):
            p = sigmoid(z @ weights)
            gradient = z.T @ (p - y) + penalty * weights
            curvature = np.maximum(p * (1 - p), 1e-12)
            hessian = (z * curvature[:, None]).T @ z + np.diag(penalty + 1e-6)
            step = np.linalg.solve(hessian, gradient)
            # backtracking: Newton's step, halved until the loss goes down
            size = 1.0
            while size > 1e-4:
                candidate = weights - size * step
                value = loss(candidate)
                if value <= current:
                    break
                size /= 2
            else:
                break
            weights, previous, current = candidate, current, value
            if previous - current <= tolerance * max(1.0, abs(current)):
                break
        return cls(weights[1:].copy(), float(weights[0]), mean, scale)

    def decision(self, features: ArrayLike) -> FloatArray:
        x = np.asarray(features, dtype=np.float64)
        return np.asarray(
            self.intercept + ((x - self.mean) / self.scale) @ self.coef, dtype=np.float64
        )

    def probability(self, features: ArrayLike) -> FloatArray:
        return sigmoid(self.decision(features))

    def to_dict(self) -> dict[str, object]:
        return {
            "coef": [float(v) for v in self.coef],
            "intercept": self.intercept,
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
        }


Transform = Literal["log1p", "logit", "identity"]


def _transform(scores: ArrayLike, kind: Transform) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    if kind == "log1p":
        return np.asarray(np.log1p(np.maximum(s, 0.0)), dtype=np.float64)
    if kind == "logit":
        p = np.clip(s, 1e-9, 1 - 1e-9)
        return np.asarray(np.log(p / (1 - p)), dtype=np.float64)
    return s


@dataclass(frozen=True)
class ScoreCalibration:
    """Platt scaling: P(take) = sigmoid(a * f(score) + b).

    ``f`` is ``log1p`` for non-negative scores of unbounded scale (counts, similarities),
    ``logit`` for scores that are already probabilities (the hybrid's: a=1, b=0 leaves them as
    they are) or the identity. ``fit`` learns a and b from held-out outcomes: for each
    (customer, item) the model listed, whether the customer bought it in the next period.
    An item the model did not list gets ``unlisted`` (by default 0: an offer on an item the
    model does not put in the customer's list is not expected to be taken).
    """

    a: float = 1.0
    b: float = 0.0
    transform: Transform = "logit"
    unlisted: float = 0.0

    @classmethod
    def fit(
        cls,
        scores: ArrayLike,
        outcomes: ArrayLike,
        *,
        transform: Transform = "log1p",
        unlisted: float = 0.0,
    ) -> Self:
        x = _transform(np.asarray(scores, dtype=np.float64).reshape(-1), transform)
        model = LogisticModel.fit(x[:, None], outcomes, l2=1e-3)
        a = float(model.coef[0] / model.scale[0])
        b = float(model.intercept - a * model.mean[0])
        return cls(a, b, transform, unlisted)

    def probability(self, scores: ArrayLike) -> FloatArray:
        return sigmoid(self.a * _transform(scores, self.transform) + self.b)

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "transform": self.transform, "unlisted": self.unlisted}
