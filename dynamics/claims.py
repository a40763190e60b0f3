"""The claims ledger: ``python -m dynamics.claims`` decides every registered claim of the papers.

Every model registers its claims (``Model.claims``: ``"module:NAME"`` of a tuple of
:class:`dynamics.core.claims.Claim`); this front end gathers them, runs each claim's decide
function and then its negative control (the deliberately wrong variant the same rule must
reject), and writes into ``--out`` (default ``runs/claims``) ``claims.csv`` (one row per claim,
columns :data:`COLUMNS`), ``claims.md`` (the same as a readable table) and the decide functions'
figures.  ``--quick`` uses reduced sizes (what the tests run).  A decide function that raises is
a row with verdict ``error`` and the command exits 1; bad input exits 2 with one line, before
anything runs.

``--doc FILE --from DIR [DIR ...]`` writes the ledger page (``docs/CLAIMS.md``) from the
``claims.csv`` of one or more earlier runs (later folders win for a claim id present in
several), each row with the run time, machine and date it was measured on, so rows of models run
at different times combine.
"""
from __future__ import annotations

import os
import platform
import sys
import time
import traceback

from dynamics import models
from dynamics.core.errors import UsageError

COLUMNS = ("model", "claim_id", "source", "claim", "quantity", "value", "se", "rule", "control", "negative",
           "verdict", "detail", "negative_value", "negative_verdict", "negative_detail", "quick", "wall_s",
           "machine", "date", "figure")
"""The columns of ``claims.csv``, in order."""
ERROR = "error"
"""The verdict column of a row whose decide function raised (not a verdict of the vocabulary)."""


def gather(model: str | None = None) -> list:
    """Every claim registered by the models (or by ``model``), in registry order.

    Returns
    -------
    list of dynamics.core.claims.Claim
    """
    from dynamics.core.claims import load

    out = []
    for name in ([model] if model else models.names()):
        out.extend(load(models.get(name)))
    return out


def machine() -> str:
    """The machine a row was measured on: CPU model, core count and the 1-minute load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        load = f", load {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    return f"{cpu}, {os.cpu_count()} cores{load}"


def select(model=None, ids=None) -> list:
    """The claims to run: all of ``model`` (or every model's), restricted to ``ids`` if given.
    UsageError naming an unknown id, or an id that belongs to another model than ``model``."""
    every = gather()
    by_id = {c.id: c for c in every}
    chosen = [c for c in every if model is None or c.model == model]
    if ids is None:
        return chosen
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UsageError(f"--claim names {', '.join(twice)} more than once")
    for i in ids:
        if i not in by_id:
            raise UsageError(f"--claim {i!r} is not a registered claim; the claims are {', '.join(by_id) or 'none'}")
        if model is not None and by_id[i].model != model:
            raise UsageError(f"--claim {i} belongs to model {by_id[i].model}, not to --model {model}")
    return [by_id[i] for i in ids]


def decide_row(claim, quick: bool, out: str | None) -> dict:
    """Run ``claim`` and its negative control; one row of ``claims.csv`` (``verdict = error`` and
    the exception in ``detail`` when a decide function raises)."""
    from dynamics.core.claims import SUPPORTING

    row = {k: getattr(claim, k) for k in ("model", "source", "claim", "quantity", "rule", "control", "negative")}
    row.update(claim_id=claim.id, quick=bool(quick), machine=machine(),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), figure="")
    t0 = time.perf_counter()
    try:
        d = claim.run(quick=quick, out=out, negative=False)
        row.update(value=d.value, se=d.se, verdict=d.verdict, detail=d.detail,
                   figure=os.path.relpath(d.figure, out) if d.figure and out else (d.figure or ""))
    except Exception as exc:  # a row error, reported and counted, never dropped
        row.update(value=float("nan"), se=float("nan"), verdict=ERROR, detail=_one_line(exc))
    try:
        n = claim.run(quick=quick, out=None, negative=True)
        rejected = n.verdict not in SUPPORTING
        row.update(negative_value=n.value, negative_verdict=n.verdict,
                   negative_detail=n.detail if rejected else "NOT REJECTED: " + n.detail)
    except Exception as exc:
        row.update(negative_value=float("nan"), negative_verdict=ERROR, negative_detail=_one_line(exc))
    row["wall_s"] = time.perf_counter() - t0
    return row


def _one_line(exc) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {os.path.basename(where.filename)}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{at}"


def row_failed(row) -> bool:
    """True when the claim or its negative control raised, or the negative control was not rejected."""
    from dynamics.core.claims import SUPPORTING

    return row["verdict"] == ERROR or row["negative_verdict"] == ERROR or row["negative_verdict"] in SUPPORTING


def markdown(df, columns) -> str:
    """A pipe table of ``df[columns]`` (cells with ``|`` and newlines escaped; floats to 4 digits)."""
    from dynamics.core.report import fmt

    def cell(x):
        return fmt(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in df[list(columns)].itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_ledger(rows, out: str):
    """Write ``claims.csv`` and ``claims.md`` into ``out`` atomically; returns the DataFrame."""
    import io

    import pandas as pd

    from dynamics.core.atomic import atomic_write_bytes

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.10g")
    atomic_write_bytes(os.path.join(out, "claims.csv"), buf.getvalue().encode())
    md = "# Claims ledger\n\n" + markdown(df, ("claim_id", "source", "value", "se", "verdict", "negative_verdict",
                                               "detail", "wall_s"))
    atomic_write_bytes(os.path.join(out, "claims.md"), md.encode())
    return df


def remove_previous(out: str) -> list:
    """Remove what an earlier ledger run wrote into ``out`` (its ``claims.csv``, ``claims.md`` and
    the figures that ``claims.csv`` lists), nothing else; returns the removed paths."""
    import pandas as pd

    csv = os.path.join(out, "claims.csv")
    if not os.path.isfile(csv):
        return []
    try:
        figures = [f for f in pd.read_csv(csv, keep_default_na=False).get("figure", []) if isinstance(f, str) and f]
    except (OSError, ValueError):
        figures = []
    gone = []
    for name in [*figures, "claims.csv", "claims.md"]:
        path = os.path.join(out, name)
        if os.path.isfile(path) and os.path.dirname(os.path.abspath(path)) == os.path.abspath(out):
            os.unlink(path)
            gone.append(path)
    return gone


def read_ledgers(folders):
    """The rows of ``claims.csv`` in each folder, later folders winning for a repeated claim id.
    UsageError naming a folder without a readable ``claims.csv`` or with missing columns."""
    import pandas as pd

    frames = []
    for f in folders:
        path = os.path.join(f, "claims.csv") if os.path.isdir(f) else f
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN", ""])
        except (OSError, ValueError) as exc:
            raise UsageError(f"--from {f}: no readable claims.csv ({_one_line(exc)})") from None
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise UsageError(f"--from {f}: claims.csv lacks the columns {', '.join(missing)}")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True).drop_duplicates("claim_id", keep="last")
    return df.reset_index(drop=True)


def document(df) -> str:
    """The text of ``docs/CLAIMS.md`` from ledger rows (see the module docstring)."""
    from dynamics.core.report import fmt

    lines = ["# What the papers claim, and what we find", "",
             "Generated by `python -m dynamics.claims --doc docs/CLAIMS.md --from DIR ...` from the `claims.csv` of "
             "runs of `python -m dynamics.claims [--model NAME] [--quick] --out DIR`; do not edit by hand.  The "
             "`size` column says whether a row comes from a full run or only from a `--quick` one (a quick "
             "verdict is at a reduced size or horizon and says less).",
             "",
             "Each row is a claim of a paper, stated before the run: what is measured, the decision rule, the "
             "controls, and a negative control (a deliberately wrong variant that the same rule must reject).  "
             "Verdicts: `reproduced` (the rule could have failed and came out as the paper says); `reproduced by "
             "construction` (true by algebra or by a choice of ours, the rule was never at risk); `consistent` / "
             "`inconsistent` (a measurement against a theorem's upper bound: below it is consistent, never "
             "reproduced); `not reproduced`; `inconclusive` (the rule cannot separate the outcomes at this size).",
             "",
             "`wall_s` is the time of the row (claim and negative control) in its run; a run computes the "
             "trajectories several rows share once, so a later row of the same run may show almost none.",
             "", "## Summary", ""]
    summary = df.assign(size=["quick" if str(q) == "True" else "full" for q in df["quick"]])
    lines.append(markdown(summary, ("claim_id", "verdict", "negative_verdict", "size", "wall_s", "machine", "date")))
    for model, part in df.groupby("model", sort=False):
        lines += [f"## {model}", ""]
        for r in part.itertuples(index=False):
            lines += [f"### `{r.claim_id}`: {r.verdict}", "",
                      f"- **Source**: {r.source}", f"- **Claim**: {r.claim}", f"- **Quantity**: {r.quantity}",
                      f"- **Rule** (stated before the run): {r.rule}", f"- **Controls**: {r.control}",
                      f"- **Measured**: value {fmt(float(r.value))}, se {fmt(float(r.se))}: {r.detail}",
                      f"- **Negative control** ({r.negative}): {r.negative_verdict}; {r.negative_detail}",
                      f"- **Run**: {'quick' if str(r.quick) == 'True' else 'full'} size, {float(r.wall_s):.1f} s on "
                      f"{r.machine}, {r.date}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv=None) -> int:
    from dynamics.core.cli import guarded

    return guarded(_main, argv, "rows decided so far are not written")


def _parser():
    from dynamics.core.cli import ArgParser

    ap = ArgParser(prog="python -m dynamics.claims", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=models.names(), help="only this model's claims")
    ap.add_argument("--claim", metavar="ID[,ID...]", help="only these claims (ids as --list shows them)")
    ap.add_argument("--quick", action="store_true", help="reduced sizes (what the tests run)")
    ap.add_argument("--out", help="output folder (default runs/claims)")
    ap.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder, removing the files "
                    "an earlier ledger run wrote there (or replace an existing --doc file)")
    ap.add_argument("--list", action="store_true", help="print the selected claims and exit (nothing runs)")
    ap.add_argument("--doc", metavar="FILE.md", help="write the ledger page from earlier runs (needs --from)")
    ap.add_argument("--from", dest="sources", nargs="+", metavar="DIR", help="with --doc: run folders holding "
                    "claims.csv (later ones win for a repeated claim id)")
    return ap


def _main(argv):
    from dynamics.core.atomic import atomic_write_bytes
    from dynamics.core.rundir import check_writable_dir, check_writable_file

    args = _parser().parse_args(argv)
    if args.doc or args.sources:
        if not (args.doc and args.sources):
            raise UsageError("--doc FILE and --from DIR ... go together (the page is written from earlier runs)")
        extra = [f for f, v in (("--model", args.model), ("--claim", args.claim), ("--quick", args.quick),
                                ("--out", args.out), ("--list", args.list)) if v]
        if extra:
            raise UsageError(f"--doc writes the page from earlier runs; {', '.join(extra)} does not apply")
        check_writable_file(args.doc, "--doc")
        if os.path.exists(args.doc) and not args.overwrite:
            raise UsageError(f"--doc {args.doc} exists; give --overwrite to replace it")
        df = read_ledgers(args.sources)
        atomic_write_bytes(args.doc, document(df).encode())
        print(f"wrote {args.doc}: {len(df)} claims from {', '.join(args.sources)}")
        return 0
    ids = None
    if args.claim is not None:
        ids = [i.strip() for i in args.claim.split(",")]
        if not all(ids):
            raise UsageError(f"--claim must be a comma-separated list of claim ids, got {args.claim!r}")
    chosen = select(args.model, ids)
    if args.list:
        extra = [f for f, v in (("--quick", args.quick), ("--out", args.out), ("--overwrite", args.overwrite)) if v]
        if extra:
            raise UsageError(f"--list runs nothing; {', '.join(extra)} does not apply")
        for c in chosen:
            print(f"{c.id}  [{c.model}]  {c.source}: {c.claim}")
        return 0
    if not chosen:
        raise UsageError(f"model {args.model} registers no claims" if args.model else "no model registers claims")
    out = check_writable_dir(args.out or os.path.join("runs", "claims"))
    if os.path.isdir(out) and os.listdir(out) and not args.overwrite:
        raise UsageError(f"--out {out} is not empty; give --overwrite to write the ledger there")
    os.makedirs(out, exist_ok=True)
    remove_previous(out)
    rows, failed = [], 0
    for c in chosen:
        row = decide_row(c, args.quick, out)
        rows.append(row)
        failed += row_failed(row)
        print(f"{c.id}: {row['verdict']} (negative control: {row['negative_verdict']}) in {row['wall_s']:.1f} s")
        if row["verdict"] == ERROR or row["negative_verdict"] == ERROR:
            print(f"  error: {row['detail'] if row['verdict'] == ERROR else row['negative_detail']}", file=sys.stderr)
    write_ledger(rows, out)
    print(f"wrote {os.path.join(out, 'claims.csv')} and claims.md ({len(rows)} claims)")
    if failed:
        print(f"error: {failed} claim(s) failed (a decide function raised, or a negative control was not "
              "rejected); see claims.csv", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
