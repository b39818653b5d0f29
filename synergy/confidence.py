"""Agent confidence: calibration metrics and recalibration (`agentlab calibrate confidence DATA`).

Data: one row per trajectory, an ``outcome`` column (0/1: the trajectory succeeded) and either a
``confidence`` column in [0, 1] or numeric feature columns that a logistic model maps to a
confidence (fitted on the training split). Everything here is NumPy; arrays are 1-D float64
(``confidence``, ``probability``, ``logit``) or int8 (``outcome``) of one length n unless stated.

Definitions (our choices where the literature varies):

- **ECE** with K equal-width bins: row i falls in bin ``k = min(floor(c_i K), K - 1)`` (bins
  ``[k/K, (k+1)/K)``, the last one closed), and
  ``ECE = sum_k (n_k / n) |acc_k - conf_k|`` with ``acc_k`` the mean outcome and ``conf_k`` the mean
  confidence of the bin's rows (empty bins contribute 0).
- **Brier** ``= mean((c - y)^2)``.
- **AUROC** ``= (R_+ - n_+(n_+ + 1)/2) / (n_+ n_-)`` with ``R_+`` the sum of the positives' ranks
  (ties share their average rank): the Mann-Whitney U statistic over n_+ n_- pairs, a tie counting
  one half. NaN when one class is absent.
- **NLL** ``= -mean(y log p + (1 - y) log(1 - p))`` with p clipped to ``[EPS, 1 - EPS]``; logits of
  confidences use the same clip, so a confidence of exactly 0 or 1 has a finite logit.
- **Temperature scaling**: ``p = sigmoid(z / T)``, ``z = logit(c)``, T > 0 minimising the training NLL
  (logistic regression of y on z without intercept, ``w = 1/T``; ``w`` is floored at 1e-6).
- **Platt scaling**: ``p = sigmoid(a z + b)``, (a, b) minimising the training NLL (plain maximum
  likelihood, without Platt's target smoothing).
- **Isotonic regression**: the non-decreasing map minimising squared error on the training rows
  (pool-adjacent-violators over the distinct confidences, weighted by their counts); new confidences
  are mapped by linear interpolation between the fitted points, constant beyond the ends.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from agentlab.errors import UsageError

EPS = 1e-6
METHODS = ("uncalibrated", "temperature", "platt", "isotonic")
EXAMPLE = Path(__file__).parent / "data" / "confidence_example.parquet"


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))``, overflow-free (via tanh)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with p clipped to ``[EPS, 1 - EPS]`` (|logit| <= 13.8)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: ``min(floor(c K), K - 1)`` (int64, in [0, K))."""
    return np.minimum((np.asarray(confidence, dtype=np.float64) * bins).astype(np.int64), bins - 1)


def reliability_table(confidence: np.ndarray, outcome: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin (length K arrays): ``bin_low``, ``bin_high``, ``count`` (int64),
    ``mean_confidence`` and ``accuracy`` (NaN for an empty bin)."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    k = bin_index(c, bins)
    count = np.bincount(k, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(k, weights=c, minlength=bins) / count
        accuracy = np.bincount(k, weights=y, minlength=bins) / count
    edges = np.arange(bins + 1) / bins
    return {"bin_low": edges[:-1], "bin_high": edges[1:], "count": count, "mean_confidence": mean_confidence,
            "accuracy": accuracy}  # fmt: skip


def expected_calibration_error(confidence: np.ndarray, outcome: np.ndarray, bins: int = 15) -> float:
    """``sum_k (n_k / n) |acc_k - conf_k|`` over K equal-width bins (see the module docstring)."""
    table = reliability_table(confidence, outcome, bins)
    filled = table["count"] > 0
    gap = np.abs(table["accuracy"][filled] - table["mean_confidence"][filled])
    return float(np.sum(table["count"][filled] * gap) / np.sum(table["count"]))


def brier_score(confidence: np.ndarray, outcome: np.ndarray) -> float:
    """``mean((c - y)^2)``."""
    return float(np.mean((np.asarray(confidence, dtype=np.float64) - np.asarray(outcome, dtype=np.float64)) ** 2))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values` (float64), tied values sharing the mean of their ranks."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]  # a tie group occupies ranks starts+1 .. ends
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def auroc(score: np.ndarray, outcome: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic:
    ``(R_+ - n_+(n_+ + 1)/2) / (n_+ n_-)`` with average ranks for ties (a tied pair counts 1/2)."""
    y = np.asarray(outcome).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = average_ranks(score)[y].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def negative_log_likelihood(probability: np.ndarray, outcome: np.ndarray) -> float:
    """``-mean(y log p + (1 - y) log(1 - p))``, p clipped to ``[EPS, 1 - EPS]``."""
    p = np.clip(np.asarray(probability, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(outcome, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def metrics(probability: np.ndarray, outcome: np.ndarray, bins: int = 15) -> dict[str, float]:
    """``{"ece", "brier", "auroc", "nll"}`` of one set of probabilities."""
    return {"ece": expected_calibration_error(probability, outcome, bins), "brier": brier_score(probability, outcome),
            "auroc": auroc(probability, outcome), "nll": negative_log_likelihood(probability, outcome)}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Fits


def fit_logistic(
    design: np.ndarray, outcome: np.ndarray, l2: np.ndarray | float = 0.0, iterations: int = 100
) -> np.ndarray:
    """Weights w (float64, shape (k,)) minimising ``mean(log(1 + e^{x.w}) - y x.w) + sum_j l2_j w_j^2 / 2``
    for a design (n, k): Newton's method with backtracking (Armijo), stopping when the Newton decrement
    falls below 1e-12. Starts at w = 0."""
    x = np.asarray(design, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    n, k = x.shape
    penalty = np.broadcast_to(np.asarray(l2, dtype=np.float64), (k,))

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * w * w))

    w = np.zeros(k)
    current = loss(w)
    for _ in range(iterations):
        p = sigmoid(x @ w)
        gradient = x.T @ (p - y) / n + penalty * w
        hessian = (x.T * (p * (1 - p))) @ x / n + np.diag(penalty) + 1e-12 * np.eye(k)
        step = np.linalg.solve(hessian, gradient)
        decrement = float(gradient @ step)
        if decrement < 1e-12:
            break
        t = 1.0
        while t > 1e-10:
            trial = loss(w - t * step)
            if trial <= current - 1e-4 * t * decrement:
                break
            t *= 0.5
        w, current = w - t * step, trial
    return w


def fit_temperature(confidence: np.ndarray, outcome: np.ndarray) -> float:
    """T > 0 minimising the NLL of ``sigmoid(logit(c) / T)`` (``1/T`` floored at 1e-6)."""
    w = fit_logistic(logit(confidence)[:, None], outcome)[0]
    return float(1.0 / max(w, 1e-6))


def fit_platt(confidence: np.ndarray, outcome: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the NLL of ``sigmoid(a logit(c) + b)``."""
    z = logit(confidence)
    a, b = fit_logistic(np.column_stack([z, np.ones_like(z)]), outcome)
    return float(a), float(b)


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The non-decreasing sequence f (float64, same length) minimising ``sum_i w_i (f_i - v_i)^2``:
    scan left to right keeping blocks (weighted mean, weight, length); merge the last two blocks
    while their means decrease. O(n)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    means: list[float] = []
    totals: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(v.tolist(), w.tolist()):
        means.append(value)
        totals.append(weight)
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            weight = totals[-2] + totals[-1]
            mean = (means[-2] * totals[-2] + means[-1] * totals[-1]) / weight
            length = lengths[-2] + lengths[-1]
            del means[-1], totals[-1], lengths[-1]
            means[-1], totals[-1], lengths[-1] = mean, weight, length
    return np.repeat(np.asarray(means), lengths)


@dataclasses.dataclass(frozen=True)
class IsotonicMap:
    """A fitted isotonic map: distinct training confidences ``knots`` (ascending) and their fitted
    probabilities ``values`` (non-decreasing); both float64 of one length."""

    knots: np.ndarray
    values: np.ndarray

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(confidence, dtype=np.float64), self.knots, self.values)

    @property
    def blocks(self) -> int:
        """Number of distinct fitted values (pooled blocks)."""
        return int(np.unique(self.values).size)


def fit_isotonic(confidence: np.ndarray, outcome: np.ndarray) -> IsotonicMap:
    """Isotonic regression of y on c: rows with equal confidence are pooled first (their mean outcome,
    weighted by their count), then `pool_adjacent_violators`."""
    knots, inverse, counts = np.unique(np.asarray(confidence, dtype=np.float64), return_inverse=True,
                                       return_counts=True)  # fmt: skip
    means = np.bincount(inverse, weights=np.asarray(outcome, dtype=np.float64)) / counts
    return IsotonicMap(knots, pool_adjacent_violators(means, counts))


# ---------------------------------------------------------------------------------------------------------------
# Data


def _first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (polars' messages can span several), at most `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_table(path: Path):
    """A polars DataFrame from a .parquet or .csv file. Bad input -> `UsageError` naming the file and the
    problem: missing, a directory, another suffix, unreadable, binary where CSV text is expected, not
    Parquet (no ``PAR1`` magic) or a truncated Parquet file (no footer), or a file polars cannot parse."""
    import polars as pl

    from agentlab.rundir import check_text

    path = check_text(Path(path), "DATA")
    if not path.exists():
        raise UsageError(f"DATA {path}: no such file")
    if path.is_dir():
        raise UsageError(f"DATA {path} is a directory; expected a .parquet or .csv file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UsageError(f"DATA {path}: expected a .parquet or .csv file")
    kind = "CSV" if suffix == ".csv" else "Parquet"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8192)
            handle.seek(max(size - 4, 0))
            tail = handle.read(4)
    except OSError as error:
        raise UsageError(f"DATA {path}: cannot read it ({error.strerror or type(error).__name__})") from None
    if size == 0:
        raise UsageError(f"DATA {path} is empty (0 bytes); expected a {kind} table")
    if kind == "CSV" and b"\x00" in head:
        raise UsageError(f"DATA {path} is binary (NUL bytes), not CSV text")
    if kind == "Parquet" and head[:4] != b"PAR1":
        raise UsageError(f"DATA {path} is not a Parquet file (it does not start with the PAR1 magic)")
    if kind == "Parquet" and (size < 12 or tail != b"PAR1"):
        raise UsageError(f"DATA {path} is a truncated Parquet file (no PAR1 footer at its end, {size} bytes)")
    try:
        return pl.read_csv(path) if kind == "CSV" else pl.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - a malformed file is bad input, whatever polars raises
        raise UsageError(f"DATA {path}: cannot read it as {kind} ({_first_line(error)})") from None


def column_list(frame, limit: int = 12) -> str:
    """The frame's column names for a message: quoted (control characters escaped), at most `limit`."""
    names = [repr(str(name))[:40] for name in frame.columns[:limit]]
    more = f" and {len(frame.columns) - limit} more" if len(frame.columns) > limit else ""
    return "[" + ", ".join(names) + "]" + more


def _numeric(frame, column: str, source: str) -> np.ndarray:
    import polars as pl

    values = frame[column]
    if values.dtype == pl.Boolean:
        values = values.cast(pl.Int8)
    if not values.dtype.is_numeric():
        raise UsageError(f"{source}: column {column!r} must be numeric, got {values.dtype} values like {values[0]!r}")
    if values.null_count():
        raise UsageError(f"{source}: column {column!r} has {values.null_count()} missing values")
    array = values.cast(pl.Float64).to_numpy()
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise UsageError(f"{source}: column {column!r} has a non-finite value {array[bad[0]]!r} (row {bad[0]})")
    return array


@dataclasses.dataclass(frozen=True)
class ConfidenceData:
    """Validated inputs: ``outcome`` int8 (n,); ``confidence`` float64 (n,) or None; ``features`` float64
    (n, k) or None (exactly one of the two is set); ``feature_names`` the k column names."""

    outcome: np.ndarray
    confidence: np.ndarray | None
    features: np.ndarray | None
    feature_names: tuple[str, ...] = ()


def validate(frame, features: tuple[str, ...] = (), source: str = "DATA") -> ConfidenceData:
    """Check the schema: ``outcome`` 0/1; with `features`, those numeric columns (a ``confidence``
    column is then ignored); otherwise ``confidence`` in [0, 1]. Bad input -> `UsageError` naming the
    column and the offending value."""
    columns = frame.columns
    if "outcome" not in columns:
        raise UsageError(f"{source}: missing column 'outcome' (0/1 per trajectory); columns are {column_list(frame)}")
    if frame.height < 4:
        raise UsageError(f"{source}: {frame.height} rows; need at least 4 trajectories")
    outcome = _numeric(frame, "outcome", source)
    bad = np.flatnonzero((outcome != 0) & (outcome != 1))
    if bad.size:
        raise UsageError(f"{source}: column 'outcome' must be 0/1, got {outcome[bad[0]]:g} (row {bad[0]})")
    outcome = outcome.astype(np.int8)
    if features:
        for name in features:
            if name not in columns:
                raise UsageError(f"--features: unknown column {name!r} in {source}; columns are {column_list(frame)}")
            if name == "outcome":
                raise UsageError("--features: 'outcome' is the label, not a feature")
        matrix = np.column_stack([_numeric(frame, name, source) for name in features])
        return ConfidenceData(outcome, None, matrix, tuple(features))
    if "confidence" not in columns:
        raise UsageError(
            f"{source}: missing column 'confidence' (a score in [0, 1]); give it or name feature columns with "
            f"--features; columns are {column_list(frame)}"
        )
    confidence = _numeric(frame, "confidence", source)
    bad = np.flatnonzero((confidence < 0) | (confidence > 1))
    if bad.size:
        raise UsageError(f"{source}: column 'confidence' must be in [0, 1], got {confidence[bad[0]]:g} (row {bad[0]})")
    return ConfidenceData(outcome, confidence, None)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices (int64, sorted): the first ``round(test_fraction n)`` rows of
    ``default_rng(seed).permutation(n)`` are held out."""
    permutation = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(permutation[n_test:]), np.sort(permutation[:n_test])


# ---------------------------------------------------------------------------------------------------------------
# The whole study


@dataclasses.dataclass(frozen=True)
class Recalibration:
    """Held-out study: per method and split (``"train"``, ``"test"``) the probabilities (float64) and
    metrics; the fitted parameters; the split sizes."""

    probabilities: dict[tuple[str, str], np.ndarray]
    outcomes: dict[str, np.ndarray]
    scores: dict[tuple[str, str], dict[str, float]]
    temperature: float
    platt_a: float
    platt_b: float
    isotonic_blocks: int
    feature_weights: dict[str, float] | None
    bins: int


def feature_model(features: np.ndarray, outcome: np.ndarray, train: np.ndarray, l2: float = 1e-4):
    """Fit ``p = sigmoid(w . standardise(x) + w0)`` on the training rows (standardisation by the training
    mean and standard deviation; ridge `l2` on w, none on w0). Returns (probabilities of all rows (n,),
    slopes in the features' own units ``w_j / sd_j`` (k,), the intercept in those units)."""
    mean = features[train].mean(axis=0)
    sd = features[train].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    standard = (features - mean) / sd
    design = np.column_stack([standard, np.ones(len(features))])
    penalty = np.r_[np.full(features.shape[1], l2), 0.0]
    w = fit_logistic(design[train], outcome[train], penalty)
    slopes = w[:-1] / sd
    intercept = float(w[-1] - np.sum(slopes * mean))
    return sigmoid(design @ w), slopes, intercept


def recalibrate(data: ConfidenceData, test_fraction: float = 0.3, seed: int = 0, bins: int = 15) -> Recalibration:
    """Split, (fit the feature model,) fit temperature, Platt and isotonic on the train split, and score
    every method on both splits. A split without both outcomes -> `UsageError`."""
    n = data.outcome.size
    train, test = split_indices(n, test_fraction, seed)
    for name, rows in (("train", train), ("test", test)):
        classes = np.unique(data.outcome[rows])
        if classes.size < 2:
            raise UsageError(
                f"the {name} split ({rows.size} of {n} rows, --test-fraction {test_fraction:g}) has only outcome "
                f"{classes.tolist()}; need both 0 and 1 (more rows or another --test-fraction)"
            )
    weights = None
    if data.features is not None:
        raw, slopes, intercept = feature_model(data.features, data.outcome, train)
        weights = {**{name: float(s) for name, s in zip(data.feature_names, slopes)}, "intercept": intercept}
    else:
        raw = data.confidence
    y_train = data.outcome[train]
    temperature = fit_temperature(raw[train], y_train)
    a, b = fit_platt(raw[train], y_train)
    isotonic = fit_isotonic(raw[train], y_train)
    maps = {
        "uncalibrated": lambda c: c,
        "temperature": lambda c: sigmoid(logit(c) / temperature),
        "platt": lambda c: sigmoid(a * logit(c) + b),
        "isotonic": isotonic,
    }
    outcomes = {"train": y_train, "test": data.outcome[test]}
    probabilities, scores = {}, {}
    for method in METHODS:
        for split, rows in (("train", train), ("test", test)):
            p = np.asarray(maps[method](raw[rows]), dtype=np.float64)
            probabilities[method, split] = p
            scores[method, split] = metrics(p, outcomes[split], bins)
    return Recalibration(probabilities, outcomes, scores, temperature, a, b, isotonic.blocks, weights, bins)


def metrics_frame(study: Recalibration, seed: int):
    """Tidy polars DataFrame: one row per (method, split) with n, ece, brier, auroc, nll, bins, seed."""
    import polars as pl

    rows = [{"method": m, "split": s, "n": int(study.outcomes[s].size), **study.scores[m, s], "bins": study.bins,
             "seed": seed} for (m, s) in study.scores]  # fmt: skip
    return pl.DataFrame(rows)


def reliability_frame(study: Recalibration):
    """Tidy polars DataFrame: one row per (method, split, bin) of `reliability_table`."""
    import polars as pl

    parts = []
    for (method, split), p in study.probabilities.items():
        table = reliability_table(p, study.outcomes[split], study.bins)
        parts.append(pl.DataFrame({"method": method, "split": split, "bin": np.arange(study.bins), **table}))
    return pl.concat(parts)


def summary(study: Recalibration) -> dict:
    """Flat summary.json keys: held-out metrics per method (``<metric>_<method>``), fitted parameters,
    split sizes and the method with the lowest held-out ECE."""
    out: dict = {"train_rows": int(study.outcomes["train"].size), "test_rows": int(study.outcomes["test"].size),
                 "bins": study.bins, "positive_rate": float(np.mean(np.r_[study.outcomes["train"],
                                                                          study.outcomes["test"]]))}  # fmt: skip
    for method in METHODS:
        for metric, value in study.scores[method, "test"].items():
            out[f"{metric}_{method}"] = value
    out["best_method_by_ece"] = min(METHODS, key=lambda m: study.scores[m, "test"]["ece"])
    out["temperature"] = study.temperature
    out["platt_a"] = study.platt_a
    out["platt_b"] = study.platt_b
    out["isotonic_blocks"] = study.isotonic_blocks
    out["confidence_source"] = "features" if study.feature_weights is not None else "column"
    for name, weight in (study.feature_weights or {}).items():
        out[f"feature_weight_{name}"] = weight
    return out


def table_text(study: Recalibration) -> str:
    """The held-out table (method x ECE, Brier, AUROC, NLL) as aligned text."""
    n = study.outcomes["test"].size
    lines = [f"held-out ({n} rows, ECE over {study.bins} equal-width bins)",
             f"{'method':<13} {'ECE':>7} {'Brier':>7} {'AUROC':>7} {'NLL':>7}"]  # fmt: skip
    for method in METHODS:
        s = study.scores[method, "test"]
        lines.append(f"{method:<13} {s['ece']:7.4f} {s['brier']:7.4f} {s['auroc']:7.4f} {s['nll']:7.4f}")
    return "\n".join(lines)


def reliability_figure(study: Recalibration):
    """Held-out reliability diagrams: one column per method (before in grey, after in colour), accuracy vs
    mean confidence per bin on top and the bin counts below."""
    from agentlab.rundir import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(2, len(METHODS), figsize=(3.3 * len(METHODS), 4.6), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)  # fmt: skip
    before = reliability_table(study.probabilities["uncalibrated", "test"], study.outcomes["test"], study.bins)
    width = 1.0 / study.bins
    for column, method in enumerate(METHODS):
        top, bottom = axes[0][column], axes[1][column]
        after = reliability_table(study.probabilities[method, "test"], study.outcomes["test"], study.bins)
        top.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
        if method != "uncalibrated":
            top.plot(before["mean_confidence"], before["accuracy"], "o-", color="0.6", ms=3, lw=1, label="before")
            bottom.bar(before["bin_low"], before["count"], width=width, align="edge", color="0.8", label="before")
        top.plot(after["mean_confidence"], after["accuracy"], "o-", color=f"C{column}", ms=3, lw=1.2, label=method)
        bottom.bar(after["bin_low"], after["count"], width=width, align="edge", color=f"C{column}", alpha=0.6)
        ece = study.scores[method, "test"]["ece"]
        top.set_title(f"{method}: ECE {ece:.3f}", fontsize=9)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.legend(loc="upper left", fontsize=7)
        bottom.set_xlabel("confidence")
    axes[0][0].set_ylabel("accuracy (held-out)")
    axes[1][0].set_ylabel("rows per bin")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------------
# The shipped example


@dataclasses.dataclass(frozen=True)
class OverconfidentGenerator:
    """Trajectories whose true success logit is ``z = w1 self_consistency + w2 tool_errors + w3 log_steps``,
    shifted to have sample mean `intercept` (``self_consistency ~ U(0, 1)``, ``tool_errors ~ Poisson(errors_mean)``,
    ``log_steps ~ N(3, 0.5)``, rounded to 3 decimals),
    ``outcome ~ Bernoulli(sigmoid(z))`` and a reported ``confidence = sigmoid(overconfidence z + shift)``,
    rounded to 4 decimals: an agent stretching its logits (overconfidence > 1). Temperature scaling should
    find T ~ overconfidence."""

    seed: int = 20260601
    rows: int = 4000
    intercept: float = 0.0
    weight_self_consistency: float = 2.5
    weight_tool_errors: float = -0.6
    weight_log_steps: float = -0.2
    errors_mean: float = 1.0
    overconfidence: float = 2.5
    shift: float = 0.0


def generate_example(config: OverconfidentGenerator = OverconfidentGenerator()):
    """A polars DataFrame (trajectory, confidence, outcome, self_consistency, tool_errors, log_steps)."""
    import polars as pl

    rng = np.random.default_rng(config.seed)
    self_consistency = np.round(rng.random(config.rows), 3)
    tool_errors = rng.poisson(config.errors_mean, config.rows)
    log_steps = np.round(3.0 + 0.5 * rng.standard_normal(config.rows), 3)
    z = (config.weight_self_consistency * self_consistency + config.weight_tool_errors * tool_errors
         + config.weight_log_steps * log_steps)  # fmt: skip
    z = z - np.mean(z) + config.intercept
    outcome = (rng.random(config.rows) < sigmoid(z)).astype(np.int8)
    confidence = np.round(sigmoid(config.overconfidence * z + config.shift), 4)
    return pl.DataFrame({
        "trajectory": np.arange(config.rows, dtype=np.int32),
        "confidence": confidence,
        "outcome": outcome,
        "self_consistency": self_consistency,
        "tool_errors": tool_errors.astype(np.int32),
        "log_steps": log_steps,
    })  # fmt: skip


def write_example(path: Path = EXAMPLE) -> list[Path]:
    """Write the example Parquet file and its JSON sidecar (generator and parameters)."""
    from agentlab.rundir import write_json, write_parquet

    path = Path(path)
    config = OverconfidentGenerator()
    meta = {"generator": "agentlab.synergy.confidence.generate_example", "parameters": dataclasses.asdict(config)}
    return [write_parquet(path, generate_example(config)), write_json(path.with_suffix(".json"), meta)]
