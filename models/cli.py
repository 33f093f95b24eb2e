"""The ``dataset``, ``train``, ``evaluate`` and ``audit`` subcommands: from labelled captures to a
model version, and the checks that keep its results honest."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from antinex.logs import event
from antinex.options import UsageError, add_flag, positive_int

log = logging.getLogger("antinex.models")
EPILOG = "exit codes: 0 done, 1 runtime failure (audit: findings), 2 bad usage or input"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of layer widths like 256,128")
    return widths


def _names(value: str | None) -> list[str]:
    """A comma-separated flag value as a list (empty items dropped)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dataset``, ``train``, ``evaluate`` and ``audit``."""
    _register_dataset(subparsers)
    _register_train(subparsers)
    _register_evaluate(subparsers)
    _register_audit(subparsers)


def _register_dataset(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="Build labelled datasets from captures, or import AntiNex v1 CSVs",
        description="Turn captures into labelled datasets (CSV or .csv.gz).",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="dataset_command", metavar="COMMAND")
    commands.required = True
    scope = "dataset"

    build = commands.add_parser(
        "build",
        help="Decode pcaps or sensor JSON lines, label them with rules, write a dataset",
        description="Decode each input as the sensor does (context features included), label "
        "every packet with the rules of a label file (time window x hosts x ports x protocol), "
        "and write one dataset with label, attack_type, scenario and capture columns.",
        epilog=EPILOG,
    )
    add_flag(
        build,
        "--input",
        scope=scope,
        required=True,
        help="pcap/pcapng files or sensor .jsonl files, comma separated; each is a capture",
    )
    add_flag(build, "--labels", scope=scope, required=True, help="JSON label rules file")
    add_flag(
        build,
        "--scenario",
        scope=scope,
        help="Scenario name for every input (default: each input's file name stem)",
    )
    add_flag(build, "--out", scope=scope, required=True, help="Dataset file: .csv or .csv.gz")
    add_flag(
        build,
        "--payload-bytes",
        scope=scope,
        default=16,
        type=int,
        help="Payload bytes kept in payload_hex, as the sensor's flag",
    )
    add_flag(
        build,
        "--context-table-size",
        scope=scope,
        default=100_000,
        type=int,
        help="Hosts, pairs and flows kept for context features (0: none), as the sensor's",
    )
    build.set_defaults(run=run_build)

    v1 = commands.add_parser(
        "import-antinex",
        help="Convert AntiNex v1 CSVs into this project's dataset columns",
        description="Map the columns of AntiNex v1 CSV files onto the packet record, derive "
        "what can be derived, drop what v1 recorded wrongly, and print what became of each.",
        epilog=EPILOG,
    )
    add_flag(v1, "--input", scope=scope, required=True, help="v1 CSV files, comma separated")
    add_flag(v1, "--out", scope=scope, required=True, help="Dataset file: .csv or .csv.gz")
    v1.set_defaults(run=run_import)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    from models.splits import METHODS

    parser = subparsers.add_parser(
        "train",
        help="Train a model version on a labelled dataset, with a baseline and a report",
        description="Split the dataset without putting one flow, host pair or capture on both "
        "sides, fit the scaler on training rows, train a dense network and a gradient-boosting "
        "baseline, set the threshold for a target false-positive rate on validation rows, "
        "save the model directory and write the test report.",
        epilog=EPILOG,
    )
    scope = "train"
    add_flag(
        parser,
        "--dataset",
        scope=scope,
        required=True,
        help="Dataset files from `antinex dataset build`, comma separated",
    )
    add_flag(parser, "--out", scope=scope, required=True, help="New model directory")
    add_flag(parser, "--report-dir", scope=scope, help="Report directory (default: OUT/report)")
    add_flag(
        parser,
        "--split",
        scope=scope,
        default="scenario",
        choices=list(METHODS),
        help="What stays whole on one side of the split",
    )
    add_flag(
        parser,
        "--holdout-attack",
        scope=scope,
        help="The attack type left out of training, for --split leave-one-attack-out",
    )
    add_flag(
        parser,
        "--test-size",
        scope=scope,
        default=0.25,
        type=_fraction,
        help="Share of rows (by whole groups) held out for the test",
    )
    add_flag(
        parser,
        "--val-size",
        scope=scope,
        default=0.15,
        type=_fraction,
        help="Share of rows (by whole groups) held out for early stopping and threshold",
    )
    add_flag(
        parser,
        "--hidden",
        scope=scope,
        default="256,128",
        type=_widths,
        help="Hidden layer widths, comma separated",
    )
    add_flag(
        parser,
        "--dropout",
        scope=scope,
        default=0.1,
        type=float,
        help="Dropout after each hidden layer",
    )
    add_flag(
        parser,
        "--epochs",
        scope=scope,
        default=30,
        type=positive_int,
        help="Most epochs; early stopping usually ends sooner",
    )
    add_flag(
        parser,
        "--batch-size",
        scope=scope,
        default=256,
        type=positive_int,
        help="Rows per training batch",
    )
    add_flag(
        parser,
        "--patience",
        scope=scope,
        default=4,
        type=positive_int,
        help="Epochs without a better validation loss before stopping",
    )
    add_flag(
        parser, "--learning-rate", scope=scope, default=1e-3, type=float, help="Adam learning rate"
    )
    add_flag(
        parser,
        "--target-fpr",
        scope=scope,
        default=0.01,
        type=_fraction,
        help="False-positive rate on benign validation rows the threshold aims for",
    )
    add_flag(
        parser,
        "--multiclass",
        scope=scope,
        switch=True,
        help="Predict the attack type (softmax) instead of attack or benign",
    )
    add_flag(parser, "--exclude", scope=scope, help="Feature fields to leave out, comma separated")
    add_flag(
        parser,
        "--gbm-iterations",
        scope=scope,
        default=200,
        type=positive_int,
        help="Boosting iterations of the baseline",
    )
    add_flag(
        parser,
        "--gbm-threads",
        scope=scope,
        default=1,
        type=positive_int,
        help="OpenMP threads of the baseline; more help only on an otherwise idle machine",
    )
    add_flag(
        parser,
        "--no-log-compress",
        scope=scope,
        switch=True,
        help="Scale every feature linearly; by default features whose training values reach "
        "beyond [-1, 1] go "
        "through sign(x)*ln(1+|x|) before the min-max scaling",
    )
    add_flag(parser, "--seed", scope=scope, default=0, type=int, help="Random seed")
    parser.set_defaults(run=run_train)


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a labelled dataset with a model version and write a report",
        description="Score every row of a labelled dataset with a saved model at its "
        "threshold, and write report.json, summary.md and plots. Warns when the dataset is the "
        "model's training data or shares captures with it.",
        epilog=EPILOG,
    )
    scope = "evaluate"
    add_flag(parser, "--model", scope=scope, required=True, help="Model directory")
    add_flag(parser, "--dataset", scope=scope, required=True, help="Dataset files, comma separated")
    add_flag(parser, "--out", scope=scope, required=True, help="Report directory")
    add_flag(
        parser,
        "--target-fpr",
        scope=scope,
        default=0.01,
        type=_fraction,
        help="False-positive rate for the informational threshold in the report",
    )
    parser.set_defaults(run=run_evaluate)


def _register_audit(subparsers: argparse._SubParsersAction) -> None:
    from models.splits import AUDIT_METHODS

    parser = subparsers.add_parser(
        "audit",
        help="Find what would make results on a dataset dishonest",
        description="Rank the leaks of a labelled dataset (this project's, or AntiNex v1 CSVs "
        "read as they are): single columns that separate the classes, columns that "
        "fingerprint a capture, row counters, duplicate rows (also across a split), classes "
        "that come from captures of their own. Exits 1 when a check reaches its limit.",
        epilog=EPILOG,
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET", help="Dataset CSV files")
    scope = "audit"
    add_flag(
        parser,
        "--threshold",
        scope=scope,
        default=0.99,
        type=_fraction,
        help="Score at which a separation, fingerprint or row-order check is a finding",
    )
    add_flag(
        parser,
        "--max-duplicate-share",
        scope=scope,
        default=0.01,
        type=_fraction,
        help="Share of duplicate rows at which the duplicate checks are findings",
    )
    add_flag(
        parser,
        "--split",
        scope=scope,
        choices=list(AUDIT_METHODS),
        help="Also count test rows with a twin in training rows under this split",
    )
    add_flag(
        parser,
        "--test-size",
        scope=scope,
        default=0.25,
        type=_fraction,
        help="Test share for --split",
    )
    add_flag(parser, "--seed", scope=scope, default=0, type=int, help="Random seed")
    add_flag(
        parser,
        "--all-columns",
        scope=scope,
        switch=True,
        help="Check every number column, identifiers included, not only the features",
    )
    add_flag(
        parser,
        "--top",
        scope=scope,
        default=10,
        type=int,
        help="Checks under their limit shown after the findings",
    )
    add_flag(parser, "--json", scope=scope, help="Also write the findings as JSON here")
    parser.set_defaults(run=run_audit)


# Runs ---------------------------------------------------------------------------------------


def run_build(args: argparse.Namespace) -> int:
    from models.build import build
    from models.labels import load_rules

    inputs = _names(args.input)
    if not inputs:
        raise UsageError("--input names no files")
    rules = load_rules(args.labels)
    summary = build(
        inputs, rules, args.out, args.scenario, args.payload_bytes, args.context_table_size
    )
    print(f"wrote {summary['rows']} rows to {args.out}")
    for kind, count in sorted(summary["by_attack_type"].items()):
        print(f"  {kind:24s} {count:>10,}")
    for number, (rule, hits) in enumerate(zip(rules, summary["rule_matches"], strict=True), 1):
        print(f"  rule {number} ({rule.attack_type}): {hits:,} packets")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from models.dataset import DatasetWriter
    from models.v1 import format_fates, import_v1

    inputs = _names(args.input)
    with DatasetWriter(args.out) as writer:
        for path in inputs:
            if not Path(path).is_file():
                raise UsageError(f"--input {path} does not exist; give an AntiNex v1 CSV file")
            before = writer.rows
            fates = import_v1(path, writer)
            print(f"{path}: {writer.rows - before} rows")
            print(format_fates(fates))
            print()
        rows = writer.rows
    event(log, logging.INFO, "antinex_v1_imported", files=len(inputs), rows=rows, out=args.out)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from models.dataset import load_dataset
    from models.train import TrainSettings, train

    ds = load_dataset(_names(args.dataset))
    settings = TrainSettings(
        split=args.split,
        test_size=args.test_size,
        val_size=args.val_size,
        seed=args.seed,
        holdout_attack=args.holdout_attack,
        hidden=tuple(args.hidden),
        dropout=args.dropout,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        learning_rate=args.learning_rate,
        target_fpr=args.target_fpr,
        multiclass=args.multiclass,
        exclude=tuple(_names(args.exclude)),
        gbm_iterations=args.gbm_iterations,
        gbm_threads=args.gbm_threads,
        log_compress=not args.no_log_compress,
    )
    out = Path(args.out)
    report_dir = Path(args.report_dir) if args.report_dir else out / "report"
    result = train(ds, settings, out, report_dir)
    _print_headline(result["metrics"])
    print(f"model {result['manifest'].model_version} in {out}; report in {report_dir}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from models.dataset import load_dataset
    from models.evaluate import evaluate_model

    ds = load_dataset(_names(args.dataset))
    metrics = evaluate_model(Path(args.model), ds, Path(args.out), args.target_fpr)
    _print_headline([metrics])
    print(f"report in {args.out}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from models.audit import audit, format_table, write_json

    ds = _read_for_audit(args.datasets)
    result = audit(
        ds,
        limit=args.threshold,
        max_duplicate_share=args.max_duplicate_share,
        split=args.split,
        test_size=args.test_size,
        seed=args.seed,
        all_columns=args.all_columns,
    )
    print(f"audit of {ds.n_rows} rows ({ds.kind}) from {len(args.datasets)} file(s)")
    for note in result.notes:
        print(f"  note: {note}")
    print(format_table(result, args.top))
    if args.json:
        write_json(result, Path(args.json))
    flagged = result.flagged
    event(log, logging.INFO, "audit_done", rows=ds.n_rows, findings=len(flagged))
    print(f"{len(flagged)} finding(s)" if flagged else "no findings")
    return 1 if flagged else 0


def _read_for_audit(paths: list[str]) -> Any:
    from models.dataset import load_dataset, read_header
    from models.v1 import is_v1_header, read_v1

    kinds = {is_v1_header(read_header(path)) for path in paths}
    if len(kinds) > 1:
        raise UsageError("audit either AntiNex v1 CSVs or this project's datasets, not both")
    return read_v1(paths) if kinds.pop() else load_dataset(paths)


def _print_headline(metrics: list[dict[str, Any]]) -> None:
    keys = ("accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc", "fpr", "threshold")
    first = metrics[0]
    names = [m["model"] for m in metrics]
    out = sys.stdout
    out.write(f"{'':14s}" + "".join(f"{n:>14s}" for n in names) + f"{'no-skill':>14s}\n")
    no_skill = {
        "accuracy": first["majority_baseline_accuracy"],
        "precision": first["prevalence"],
        "pr_auc": first["prevalence"],
        "roc_auc": 0.5,
    }
    for key in keys:
        cells = "".join(_cell(m[key]) for m in metrics)
        out.write(f"{key:14s}{cells}{_cell(no_skill.get(key))}\n")
    out.write(
        f"rows {first['rows']} ({first['attack_rows']} attack); accuracy is shown beside the "
        "majority-class baseline (no-skill), never alone\n"
    )


def _cell(value: Any) -> str:
    return f"{value:>14.4f}" if isinstance(value, float) else f"{'n/a':>14s}"
