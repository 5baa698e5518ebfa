"""CLV models benchmark on CDNOW: accuracy and fit time against the ``lifetimes`` library.

The CDNOW data (Fader & Hardie's 1/10 sample of 2,357 customers and the full 23,570) ships only
inside the ``lifetimes`` 0.11.3 wheel, so the wheel is downloaded once into bench/.cache/
(``pip download --no-deps``; nothing is committed) and read as a zip. Then:

- the published targets: BG/NBD on ``cdnow_customers_summary.csv`` (r, alpha, a, b = 0.243,
  4.414, 0.793, 2.426) and Gamma-Gamma on ``cdnow_customers_summary_with_transactions.csv``
  (p, q, v = 6.25, 3.74, 15.44), to three significant figures;
- our ``summary`` of the sample checked against that published summary (x, t_x, T, zbar);
- on the sample and on the master file: calibration until 1997-09-30, holdout until 1998-06-30,
  in weeks (purchases on one day are one purchase). BG/NBD, Pareto/NBD and Gamma-Gamma are
  fitted by consentry and by lifetimes (BetaGeoFitter, ParetoNBDFitter, GammaGammaFitter) on
  lifetimes' own ``calibration_and_holdout_data`` of the same transactions; reported: the
  parameters, fit time (median of ``--repeat``), per-customer holdout MAE and RMSE of predicted
  repeat purchases, predicted and actual holdout totals, and the ratios ours / lifetimes.

lifetimes is a reference for this bench only, never imported by src/. It runs in a subprocess
(this file with ``--lifetimes-worker``) under the project's venv, where it is installed with pip
if missing; should it not import there, a throwaway venv in bench/.cache/lifetimes-venv is used.

Prints a table with the machine's core count and writes bench/results/cdnow.json.

    .venv/bin/python bench/cdnow.py [--repeat 5] [--datasets sample,master]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Single-threaded BLAS for both sides (inherited by the lifetimes subprocess): the fits are tiny,
# and on a busy machine idle BLAS threads spinning on each small call dominate the fit time.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench/.cache"
LIFETIMES = "lifetimes==0.11.3"
CALIBRATION_END = "1997-09-30"
HOLDOUT_END = "1998-06-30"
FILES = {"sample": "CDNOW_sample.txt", "master": "CDNOW_master.txt"}
BG_TARGET = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GG_TARGET = {"p": 6.2488, "q": 3.7446, "v": 15.4477}  # lifetimes' fit of the published summary
LIFETIMES_MAE = {"sample": {"bgnbd": 0.785, "pareto_nbd": 0.755}}  # the figures to match


# --- the data ------------------------------------------------------------------------------


def wheel() -> Path:
    """The lifetimes wheel in bench/.cache, downloaded (without dependencies) if absent."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith("lifetimes-0.11.3-")]
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", LIFETIMES, "-d", CACHE],
            check=True,
        )
        found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith("lifetimes-0.11.3-")]
    return found[0]


def read_member(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read(f"lifetimes/datasets/{name}").decode()


def transactions(text: str) -> dict[str, np.ndarray[Any, Any]]:
    """customer id, date, number of CDs and dollar value from a CDNOW text file.

    The master file has a header line and four columns; the sample has a fifth in front (the
    customer's id in the master file): the last four columns are taken either way.
    """
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows[0][0].isdigit():
        rows = rows[1:]
    ids = np.array([int(r[-4]) for r in rows], dtype=np.int64)
    dates = np.array([f"{r[-3][:4]}-{r[-3][4:6]}-{r[-3][6:]}" for r in rows], dtype="datetime64[D]")
    value = np.array([float(r[-1]) for r in rows])
    return {"id": ids, "date": dates, "value": value}


def published_summary(text: str) -> np.ndarray[Any, Any]:
    return np.genfromtxt(io.StringIO(text), delimiter=",", skip_header=1)


# --- lifetimes, in a subprocess ----------------------------------------------------------------


def _imports_lifetimes(python: str) -> bool:
    probe = "import warnings; warnings.simplefilter('ignore'); import lifetimes"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def lifetimes_python() -> tuple[str, str]:
    """An interpreter that imports lifetimes, and how it was had."""
    if _imports_lifetimes(sys.executable):
        return sys.executable, "project venv"
    print(f"installing {LIFETIMES} into the project venv (bench-only reference)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", LIFETIMES], check=False)
    if _imports_lifetimes(sys.executable):
        return sys.executable, "project venv (installed now)"
    venv = CACHE / "lifetimes-venv"
    python = venv / "bin/python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if not _imports_lifetimes(str(python)):
        subprocess.run([python, "-m", "pip", "install", "-q", LIFETIMES], check=True)
    if not _imports_lifetimes(str(python)):
        raise SystemExit("lifetimes 0.11.3 imports neither in the venv nor in a throwaway one")
    return str(python), "throwaway venv bench/.cache/lifetimes-venv"


def _median_time(repeat: int, fit: Callable[[], Any]) -> tuple[Any, float]:
    seconds = []
    model = None
    for _ in range(repeat):
        start = time.perf_counter()
        model = fit()
        seconds.append(time.perf_counter() - start)
    return model, statistics.median(seconds)


def lifetimes_worker(source: Path, target: Path, repeat: int) -> None:
    """Runs under the lifetimes interpreter: summaries, fits and predictions for each dataset."""
    import warnings

    warnings.simplefilter("ignore")
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
    from lifetimes.utils import calibration_and_holdout_data

    out: dict[str, Any] = {"version": __import__("lifetimes").__version__, "datasets": {}}
    data = np.load(source)
    for name in [k[: -len("_id")] for k in data.files if k.endswith("_id")]:
        tx = pd.DataFrame(
            {"id": data[f"{name}_id"], "date": data[f"{name}_date"], "value": data[f"{name}_value"]}
        )
        s = calibration_and_holdout_data(
            tx,
            "id",
            "date",
            calibration_period_end=CALIBRATION_END,
            observation_period_end=HOLDOUT_END,
            freq="D",
            freq_multiplier=7,  # days, expressed in weeks
            monetary_value_col="value",
        ).sort_index()
        x, tx_, age = s["frequency_cal"], s["recency_cal"], s["T_cal"]
        duration = float(s["duration_holdout"].iloc[0])
        result: dict[str, Any] = {
            "summary": {
                "id": s.index.to_numpy().tolist(),
                "frequency": x.tolist(),
                "recency": tx_.tolist(),
                "T": age.tolist(),
                "monetary_value": s["monetary_value_cal"].tolist(),
                "holdout": s["frequency_holdout"].tolist(),
                "duration": duration,
            }
        }
        for key, fitter in (("bgnbd", BetaGeoFitter), ("pareto_nbd", ParetoNBDFitter)):
            model, seconds = _median_time(
                repeat, lambda f=fitter, x=x, tx_=tx_, age=age: f().fit(x, tx_, age)
            )
            predicted = model.conditional_expected_number_of_purchases_up_to_time(
                duration, x, tx_, age
            )
            result[key] = {
                "params": {k: float(v) for k, v in model.params_.items()},
                "seconds": seconds,
                "predicted": np.asarray(predicted, dtype=float).tolist(),
            }
        repeaters = s[(s["frequency_cal"] > 0) & (s["monetary_value_cal"] > 0)]
        model, seconds = _median_time(
            repeat,
            lambda r=repeaters: GammaGammaFitter().fit(r["frequency_cal"], r["monetary_value_cal"]),
        )
        result["gamma_gamma"] = {
            "params": {k: float(v) for k, v in model.params_.items()},
            "seconds": seconds,
        }
        out["datasets"][name] = result
    target.write_text(json.dumps(out))


def run_lifetimes(
    python: str, data: dict[str, dict[str, np.ndarray[Any, Any]]], repeat: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        source, target = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        arrays = {
            f"{name}_{col}": (values.astype(str) if col == "date" else values)
            for name, cols in data.items()
            for col, values in cols.items()
        }
        np.savez(source, **arrays)  # type: ignore[arg-type]
        subprocess.run(
            [python, __file__, "--lifetimes-worker", source, target, "--repeat", str(repeat)],
            check=True,
        )
        result: dict[str, Any] = json.loads(target.read_text())
        return result


# --- consentry ---------------------------------------------------------------------------------


def errors(predicted: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> dict[str, float]:
    diff = predicted - actual
    return {
        "mae": float(np.mean(np.abs(diff))),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "predicted_total": float(np.sum(predicted)),
        "actual_total": float(np.sum(actual)),
    }


def three_figures(value: float) -> str:
    return f"{float(f'{value:.3g}'):g}"


def ours(data: dict[str, np.ndarray[Any, Any]], repeat: int) -> dict[str, Any]:
    from consentry.analytics import clv

    bt = clv.calibration_holdout(
        data["id"],
        data["date"],
        data["value"],
        calibration_end=CALIBRATION_END,
        holdout_end=HOLDOUT_END,
        unit="weeks",
    )
    s = bt.calibration
    result: dict[str, Any] = {
        "customers": len(s),
        "repeat_buyers": int(np.sum(s.frequency > 0)),
        "duration_weeks": bt.duration,
        "summary": s,
        "holdout": bt.holdout_frequency,
    }
    fits: list[tuple[str, Callable[[], Any]]] = [
        ("bgnbd", lambda: clv.fit_bgnbd(s.frequency, s.recency, s.T)),
        ("pareto_nbd", lambda: clv.fit_pareto_nbd(s.frequency, s.recency, s.T)),
    ]
    for key, fit in fits:
        model, seconds = _median_time(repeat, fit)
        predicted = model.expected_purchases(bt.duration, s.frequency, s.recency, s.T)
        result[key] = {
            "params": {k: getattr(model, k) for k in model.__dataclass_fields__ if k != "info"},
            "std_errors": model.info.std_errors,
            "log_likelihood": model.info.log_likelihood,
            "distinct_rows": model.info.n_rows,
            "gradient": model.info.gradient,
            "seconds": seconds,
            **errors(predicted, bt.holdout_frequency),
        }
        result[f"{key}_model"] = model
    spend, seconds = _median_time(
        repeat, lambda: clv.fit_gamma_gamma(s.frequency, s.monetary_value)
    )
    result["gamma_gamma"] = {
        "params": {"p": spend.p, "q": spend.q, "v": spend.v},
        "std_errors": spend.info.std_errors if spend.info else {},
        "seconds": seconds,
        "fitted_on": spend.info.n_customers if spend.info else 0,
        "mean_spend": spend.mean_spend,
    }
    value = clv.customer_lifetime_value(
        result["bgnbd_model"],
        s.frequency,
        s.recency,
        s.T,
        spend.expected_spend(s.frequency, s.monetary_value),
        months=12,
        monthly_discount_rate=0.01,
        unit="weeks",
    )
    result["clv_12_months"] = {"total": float(value.sum()), "mean": float(value.mean())}
    return result


def published_targets(path: Path, repeat: int) -> dict[str, Any]:
    from consentry.analytics import clv

    summary = published_summary(read_member(path, "cdnow_customers_summary.csv"))
    money = published_summary(read_member(path, "cdnow_customers_summary_with_transactions.csv"))
    bg, bg_seconds = _median_time(
        repeat, lambda: clv.fit_bgnbd(summary[:, 1], summary[:, 2], summary[:, 3])
    )
    gg, gg_seconds = _median_time(repeat, lambda: clv.fit_gamma_gamma(money[:, 1], money[:, 4]))
    bg_params = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b}
    gg_params = {"p": gg.p, "q": gg.q, "v": gg.v}
    return {
        "bgnbd": {
            "params": bg_params,
            "target": BG_TARGET,
            "log_likelihood": bg.info.log_likelihood if bg.info else None,
            "seconds": bg_seconds,
            "met": all(
                three_figures(bg_params[k]) == three_figures(BG_TARGET[k]) for k in BG_TARGET
            ),
        },
        "gamma_gamma": {
            "params": gg_params,
            "target": GG_TARGET,
            "seconds": gg_seconds,
            "met": all(
                three_figures(gg_params[k]) == three_figures(GG_TARGET[k]) for k in GG_TARGET
            ),
        },
        "published": money,
    }


def summary_check(data: dict[str, np.ndarray[Any, Any]], published: np.ndarray[Any, Any]) -> float:
    """Largest |ours - published| over x, t_x, T and zbar; the file has 2 decimals, so anything up
    to 0.005 (plus float noise) is a match."""
    from consentry.analytics import clv

    s = clv.summary(
        data["id"], data["date"], data["value"], calibration_end=CALIBRATION_END, unit="weeks"
    )
    assert np.array_equal(s.customer, published[:, 0].astype(np.int64))
    ours_ = np.column_stack([s.frequency, s.recency, s.T, s.monetary_value])
    return float(np.max(np.abs(ours_ - published[:, 1:5])))


def lifetimes_summary_check(mine: Any, theirs: dict[str, Any]) -> float:
    """Largest difference between our calibration summary and lifetimes' (all columns)."""
    s = mine["summary"]
    assert np.array_equal(s.customer, np.asarray(theirs["id"]))
    cols = [
        (s.frequency, theirs["frequency"]),
        (s.recency, theirs["recency"]),
        (s.T, theirs["T"]),
        (s.monetary_value, theirs["monetary_value"]),
        (mine["holdout"], theirs["holdout"]),
    ]
    return float(max(np.max(np.abs(a - np.asarray(b))) for a, b in cols))


# --- report ------------------------------------------------------------------------------------


def param_gap(ours_: dict[str, float], theirs: dict[str, float]) -> float:
    """The largest relative difference between two parameter sets (same names)."""
    return max(abs(ours_[k] / theirs[k] - 1) for k in theirs)


def fmt_params(params: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in params.items())


def main() -> None:
    parser = argparse.ArgumentParser(description="CLV models on CDNOW against lifetimes.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--datasets", default="sample,master")
    parser.add_argument("--lifetimes-worker", nargs=2, type=Path, metavar=("IN", "OUT"))
    args = parser.parse_args()
    if args.lifetimes_worker:
        source, target = args.lifetimes_worker
        lifetimes_worker(source, target, repeat=args.repeat)
        return

    sys.path.insert(0, str(ROOT / "src"))
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    path = wheel()
    names = [n for n in args.datasets.split(",") if n]
    data = {name: transactions(read_member(path, FILES[name])) for name in names}
    python, where = lifetimes_python()
    console.print(f"lifetimes runs in: {where} ({python})")
    reference = run_lifetimes(python, data, args.repeat)

    targets = published_targets(path, args.repeat)
    published = targets.pop("published")
    result: dict[str, Any] = {
        "benchmark": "cdnow",
        "cores": os.cpu_count(),
        "repeat": args.repeat,
        "calibration_end": CALIBRATION_END,
        "holdout_end": HOLDOUT_END,
        "unit": "weeks",
        "blas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "load_average_at_start": os.getloadavg()[0],
        "lifetimes": {"version": reference["version"], "interpreter": where},
        "targets": targets,
        "datasets": {},
    }
    if "sample" in data:
        result["targets"]["summary_vs_published_max_diff"] = summary_check(
            data["sample"], published
        )

    table = Table(title=f"CDNOW, calibration to {CALIBRATION_END}, holdout to {HOLDOUT_END}")
    for col in ("data", "model", "who", "parameters", "fit s", "MAE", "RMSE", "pred", "actual"):
        table.add_column(
            col, justify="left" if col in ("data", "model", "who", "parameters") else "right"
        )
    for name in names:
        mine = ours(data[name], args.repeat)
        theirs = reference["datasets"][name]
        actual = np.asarray(theirs["summary"]["holdout"])
        entry: dict[str, Any] = {
            "customers": mine["customers"],
            "repeat_buyers": mine["repeat_buyers"],
            "duration_weeks": mine["duration_weeks"],
            "summary_vs_lifetimes_max_diff": lifetimes_summary_check(mine, theirs["summary"]),
            "clv_12_months_bgnbd_gamma_gamma": mine["clv_12_months"],
        }
        for key, label in (("bgnbd", "BG/NBD"), ("pareto_nbd", "Pareto/NBD")):
            lt = {
                "params": theirs[key]["params"],
                "seconds": theirs[key]["seconds"],
                **errors(np.asarray(theirs[key]["predicted"]), actual),
            }
            ours_ = mine[key]
            entry[key] = {
                "ours": ours_,
                "lifetimes": lt,
                "ratio_mae": ours_["mae"] / lt["mae"],
                "ratio_rmse": ours_["rmse"] / lt["rmse"],
                "ratio_seconds": ours_["seconds"] / lt["seconds"],
                "max_param_rel_diff": param_gap(ours_["params"], lt["params"]),
            }
            # the target: no worse than lifetimes on the same data (ratio <= 1, to 1e-4)
            entry[key]["mae_target_met"] = entry[key]["ratio_mae"] <= 1 + 1e-4
            quoted = LIFETIMES_MAE.get(name, {}).get(key)
            if quoted is not None:
                entry[key]["mae_quoted_for_lifetimes"] = quoted
            for who, row in (("ours", ours_), ("lifetimes", lt)):
                table.add_row(
                    name,
                    label,
                    who,
                    fmt_params(row["params"]),
                    f"{row['seconds']:.3f}",
                    f"{row['mae']:.4f}",
                    f"{row['rmse']:.4f}",
                    f"{row['predicted_total']:.0f}",
                    f"{row['actual_total']:.0f}",
                )
            table.add_row(
                name,
                label,
                "ratio",
                "",
                f"{entry[key]['ratio_seconds']:.2f}",
                f"{entry[key]['ratio_mae']:.4f}",
                f"{entry[key]['ratio_rmse']:.4f}",
                "",
                "",
                end_section=True,
            )
        gg_lt = theirs["gamma_gamma"]
        entry["gamma_gamma"] = {
            "ours": mine["gamma_gamma"],
            "lifetimes": gg_lt,
            "ratio_seconds": mine["gamma_gamma"]["seconds"] / gg_lt["seconds"],
            "max_param_rel_diff": param_gap(mine["gamma_gamma"]["params"], gg_lt["params"]),
        }
        for who, row in (("ours", mine["gamma_gamma"]), ("lifetimes", gg_lt)):
            table.add_row(
                name, "Gamma-Gamma", who, fmt_params(row["params"]), f"{row['seconds']:.3f}"
            )
        table.add_row(
            name,
            "Gamma-Gamma",
            "ratio",
            "",
            f"{entry['gamma_gamma']['ratio_seconds']:.2f}",
            end_section=True,
        )
        result["datasets"][name] = entry

    console.print(table)
    t = result["targets"]
    console.print(
        f"targets: BG/NBD on cdnow_customers_summary.csv {fmt_params(t['bgnbd']['params'])} "
        f"(ll {t['bgnbd']['log_likelihood']:.2f}) -> {'met' if t['bgnbd']['met'] else 'MISSED'}; "
        f"Gamma-Gamma {fmt_params(t['gamma_gamma']['params'])} -> "
        f"{'met' if t['gamma_gamma']['met'] else 'MISSED'}"
    )
    if "summary_vs_published_max_diff" in t:
        console.print(
            "our summary of the sample vs the published cdnow summary (2 decimals): max "
            f"|difference| {t['summary_vs_published_max_diff']:.4f} -> "
            f"{'match' if t['summary_vs_published_max_diff'] <= 0.005 + 1e-9 else 'MISMATCH'}"
        )
    for name, entry in result["datasets"].items():
        console.print(
            f"{name}: {entry['customers']:,} customers ({entry['repeat_buyers']:,} repeat buyers); "
            f"summary vs lifetimes max diff {entry['summary_vs_lifetimes_max_diff']:.2g}; "
            f"12-month CLV (BG/NBD x Gamma-Gamma, 1%/month) total "
            f"${entry['clv_12_months_bgnbd_gamma_gamma']['total']:,.0f}"
        )
        gaps = ", ".join(
            f"{key} {entry[key]['max_param_rel_diff']:.1e}"
            for key in ("bgnbd", "pareto_nbd", "gamma_gamma")
        )
        console.print(f"  largest relative parameter difference ours/lifetimes: {gaps}")
        for key in ("bgnbd", "pareto_nbd"):
            e = entry[key]
            quoted = e.get("mae_quoted_for_lifetimes")
            console.print(
                f"  {key}: MAE {e['ours']['mae']:.4f}, lifetimes {e['lifetimes']['mae']:.4f}"
                + (f" (quoted {quoted})" if quoted else "")
                + f" -> {'no worse: met' if e['mae_target_met'] else 'WORSE: missed'}"
            )
    console.print(f"cores={result['cores']} (fit times: median of {args.repeat})")
    out = ROOT / "bench/results/cdnow.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    console.print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
