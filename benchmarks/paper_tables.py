"""Each paper's ablation table, reproduced with the tuned comparison protocol.

    python benchmarks/paper_tables.py                                   # every table, full budget
    python benchmarks/paper_tables.py --tables qsr-table3 --datasets synthetic --tune 2 --repeats 1 --epochs 2

Every row of a table is a named variant of its model: a set of config switches (the keys of the
README's switch table and the model's yaml), given to :func:`recbole_ext.compare.run_comparison`
as an entry ``Model[key=value,...]`` with the row's name as label. Each row (and SASRec, beside
each table) gets the same number of Hyperopt trials over its model's search space minus the keys
the row fixes, chosen on validation only, then is tested on K seeds. ``benchmarks/PAPER_TABLES.md``
gets, per table and dataset, our mean ± std per row, the change against SASRec with its paired
test, the paper's figures where it prints them, and for every ordering the paper claims
(row A above row B) whether ours agrees and whether the difference is significant (Wilcoxon
signed-rank over (test user, seed) pairs pooled over seeds, p < 0.05). The papers' values and
orderings are data in :data:`TABLES` (from the papers' tables and text; see
/work/shared/MODEL_NOTES.md); nothing in the page is typed by hand.

Budget flags are those of ``run_benchmarks.py``; a page made with less than its full budget says
it is a smoke test. Records stay under ``--work-dir``, one folder per dataset and protocol shared by
the tables (SASRec, and a row several tables hold, train once), so a rerun resumes.

Tuning every row separately costs a table's rows times the results page's tuning. With
``--chosen-from <run_benchmarks.py --work-dir>`` no row is tuned here: every row takes the
configuration that the results page's tuned comparison chose for the table's model (on validation
only), with the row's own switches on top, and SASRec takes its own chosen configuration; each is
trained on ``--repeats`` seeds; a run that comparison already made with the very same resolved
configuration and seed (SASRec, a row equal to the tuned choice) is copied from its records, not
trained again (``compare.equal_run_record``). All rows of a table then share one tuned configuration (the common
ablation practice; it can favour the full model, and the page says so). The page counts as a full
budget when that comparison had the full number of trials.

A page can be built over several runs (one dataset now, another on another day or machine): with
``--keep-sections`` the sections of the existing ``--output`` page that this command does not run
stay, each marked with the command that wrote it.

MA-GNN's Table 3 is run under the next-item protocol and under its paper's (``eval_protocol:
magnn``); its configuration is the one chosen under the next-item protocol.
"""

import argparse
import datetime
import os
import re
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO_ROOT)

import run_benchmarks  # noqa: E402  (benchmarks/run_benchmarks.py: budget, shared setting, machine)

METRIC = "ndcg@10"
BASELINE = "SASRec"
WITH_SIDE_INFORMATION = ["synthetic"]  # queries, micro-behaviours: only the embedded dataset has them
ANY_DATASET = ["synthetic", "ml-100k"]


def _table(key, title, model, datasets, paper_metric, rows, claims=None, protocols=(None,), tuned_rows=False,
           inherit_from=None):
    """One paper table: ``rows`` are ``(label, switches, paper value or None)``; ``claims`` are the
    paper's orderings ``(better, worse)``; by default every pair ordered by the paper's values.
    ``protocols``: the ``eval_protocol`` values it runs under (None: the shared setting's).
    ``tuned_rows``: under ``--chosen-from`` too, the rows are tuned here, each with as many trials
    as that comparison gave every model (SASRec keeps its choice there), for a row whose model's
    choice does not fit it. ``inherit_from``: under ``--chosen-from``, the rows start from that
    label's chosen values instead of their model's (a table that needs it is not run without)."""
    if claims is None:
        ranked = sorted((r for r in rows if r[2] is not None), key=lambda r: -r[2])
        claims = [(a[0], b[0]) for i, a in enumerate(ranked) for b in ranked[i + 1:] if a[2] > b[2]]
    return {"key": key, "title": title, "model": model, "datasets": datasets, "paper_metric": paper_metric,
            "rows": rows, "claims": claims, "protocols": list(protocols), "tuned_rows": tuned_rows,
            "inherit_from": inherit_from}


#: QuerySeqRec keys that do nothing with ``use_queries: False`` (no query, no augmentation, one
#: training stage), fixed so that a tuning of w/o Q spends its trials on the keys that act.
INERT_WITHOUT_QUERIES = {"augmentation": "none", "training_schedule": "joint", "graph_alpha": 1.0, "rho": 1.5,
                         "replacement_form": "rho"}


#: The ablation tables of the five papers: rows as config switches, the paper's values and orderings.
TABLES = [
    _table("qsr-table3", "QuerySeqRec Table 3 (components)", "QuerySeqRec", WITH_SIDE_INFORMATION,
           "Diginetica N@20", [
               # the full model fixes the paper's augmentation: the tuned choice may be "none" (w/o A)
               ("Query-SeqRec", {"augmentation": "graph"}, 0.2361),
               ("w/ R", {"augmentation": "uniform"}, 0.2351),
               ("w/o A", {"augmentation": "none"}, 0.2287),
               ("w/o Q", {"use_queries": False}, 0.1979),
           ]),
    _table("qsr-table4", "QuerySeqRec Table 4 (query incorporation, no augmentation)", "QuerySeqRec",
           WITH_SIDE_INFORMATION, "Diginetica N@20", [
               ("Heterogeneous", {"query_fusion": "heterogeneous", "augmentation": "none"}, 0.2287),
               ("Early", {"query_fusion": "early", "augmentation": "none"}, 0.2169),
               ("FDSA (Late)", {"query_fusion": "late", "augmentation": "none"}, 0.2081),
               ("NOVA", {"query_fusion": "nova", "augmentation": "none"}, 0.2031),
           ]),
    # w/o Q is SASRec's input and encoder: in Table 3 it inherits the configuration chosen for the
    # full model (its learning rate, dropout); tuned here on its own, as SASRec was, it shows
    # whether the gap to SASRec is the model or that inherited configuration
    _table("qsr-woq-tuned", "QuerySeqRec w/o Q tuned on its own (no queries: SASRec's input and encoder)",
           "QuerySeqRec", WITH_SIDE_INFORMATION, "Diginetica N@20", [
               ("w/o Q, tuned alone", dict(INERT_WITHOUT_QUERIES, use_queries=False), 0.1979),
           ], claims=[], tuned_rows=True),
    # and at exactly SASRec's chosen configuration: if w/o Q is SASRec, this row is SASRec's figure,
    # and a gap in the row above is the search space (QuerySeqRec's grid), not the model
    _table("qsr-woq-sasrec", "QuerySeqRec w/o Q at SASRec's chosen configuration", "QuerySeqRec",
           WITH_SIDE_INFORMATION, "Diginetica N@20", [
               ("w/o Q, SASRec's choice", dict(INERT_WITHOUT_QUERIES, use_queries=False), 0.1979),
           ], claims=[], inherit_from=BASELINE),
    _table("hugt-table2", "HUGT Table 2 (graph heads)", "HUGT", ANY_DATASET, "ML1M N@10", [
        ("HUGT-MP", {"graph_mode": "mp", "n_heads": 4, "n_graph_heads": 2}, 0.1218),
        ("HUGT-SE", {"graph_mode": "se", "n_heads": 4, "n_graph_heads": 2}, 0.1191),
        ("SASRec-Ours (0 graph heads)", {"n_heads": 4, "n_graph_heads": 0}, 0.1039),
    ]),
    _table("hugt-heads", "HUGT Figure 3 (sequence + graph heads of 4)", "HUGT", ANY_DATASET,
           "ML1M (figure, no numbers)", [
               ("4 seq + 0 graph", {"graph_mode": "mp", "n_heads": 4, "n_graph_heads": 0}, None),
               ("3 seq + 1 graph", {"graph_mode": "mp", "n_heads": 4, "n_graph_heads": 1}, None),
               ("2 seq + 2 graph", {"graph_mode": "mp", "n_heads": 4, "n_graph_heads": 2}, None),
               ("1 seq + 3 graph", {"graph_mode": "mp", "n_heads": 4, "n_graph_heads": 3}, None),
               ("0 seq + 4 graph", {"graph_mode": "mp", "n_heads": 4, "n_graph_heads": 4, "graph_only": True}, None),
           ],
           # the text: dropping all sequence heads hurts everywhere; dropping all graph heads hurts
           # on long sequences (ML1M, Netflix, Taobao)
           claims=[("2 seq + 2 graph", "0 seq + 4 graph"), ("2 seq + 2 graph", "4 seq + 0 graph")]),
    _table("embsr-table4", "EMBSR Table IV (components)", "EMBSR", WITH_SIDE_INFORMATION, "JD-Appliances H@10", [
        ("EMBSR", {"variant": "EMBSR"}, 49.57),
        ("EMBSR-NF", {"variant": "EMBSR-NF"}, 48.99),
        ("EMBSR-NG", {"variant": "EMBSR-NG"}, 46.78),
        ("EMBSR-NS", {"variant": "EMBSR-NS"}, 46.73),
    ]),
    _table("embsr-fig4", "EMBSR Figure 4 (sequential pattern of micro-behaviours)", "EMBSR",
           WITH_SIDE_INFORMATION, "figure, no numbers", [
               ("EMBSR", {"variant": "EMBSR"}, None),
               ("SGNN-Seq-Self", {"variant": "SGNN-Seq-Self"}, None),
               ("SGNN-Self", {"variant": "SGNN-Self"}, None),
               ("RNN-Self", {"variant": "RNN-Self"}, None),
           ],
           claims=[("EMBSR", "SGNN-Seq-Self"), ("EMBSR", "SGNN-Self"), ("EMBSR", "RNN-Self"),
                   ("SGNN-Seq-Self", "SGNN-Self"), ("SGNN-Self", "RNN-Self")]),
    _table("embsr-fig5", "EMBSR Figure 5 (dyadic relational pattern)", "EMBSR", WITH_SIDE_INFORMATION,
           "figure, no numbers", [
               ("EMBSR", {"variant": "EMBSR"}, None),
               ("SGNN-Dyadic", {"variant": "SGNN-Dyadic"}, None),
               ("SGNN-Abs-Self", {"variant": "SGNN-Abs-Self"}, None),
               ("SGNN-Self", {"variant": "SGNN-Self"}, None),
               ("RNN-Self", {"variant": "RNN-Self"}, None),
           ],
           claims=[("EMBSR", "SGNN-Dyadic"), ("EMBSR", "SGNN-Abs-Self"), ("SGNN-Dyadic", "SGNN-Abs-Self"),
                   ("SGNN-Self", "RNN-Self"), ("SGNN-Abs-Self", "RNN-Self")]),
    _table("magnn-table3", "MA-GNN Table 3 (architecture)", "MAGNN", ANY_DATASET, "CDs N@10", [
        ("(1) MF", {"variant": "mf"}, 0.0145),
        ("(2) MF+S", {"variant": "mf_s"}, 0.0158),
        ("(3) MF+S+H+gating", {"variant": "mf_s_h_gate"}, 0.0191),
        ("(4) MF+S+H+concat", {"variant": "mf_s_h_concat"}, 0.0148),
        ("(5) MF+S+H+GRU", {"variant": "mf_s_h_gru"}, 0.0147),
        ("(6) MA-GNN", {"variant": "full"}, 0.0214),
    ], protocols=(None, "magnn")),
    _table("dgsr-variants", "DGSR Figure 3 and DGSR-0 (propagation, aggregation)", "DGSR", ANY_DATASET,
           "figure, no numbers", [
               ("DGSR", {}, None),
               ("DGSR-GAT", {"propagation": "gat"}, None),
               ("DGSR-GCN", {"propagation": "gcn"}, None),
               ("DGSR-Global", {"aggregation": "global"}, None),
               ("DGSR-Local", {"aggregation": "local"}, None),
               ("DGSR-0", {"n_layers": 0}, None),
           ],
           # the text: DGSR best of all variants; DGSR-GCN the poorest; DGSR-Global above DGSR-GAT;
           # DGSR-1 above DGSR-0
           claims=[("DGSR", r) for r in ("DGSR-GAT", "DGSR-GCN", "DGSR-Global", "DGSR-Local", "DGSR-0")]
           + [(r, "DGSR-GCN") for r in ("DGSR-GAT", "DGSR-Global", "DGSR-Local")]
           + [("DGSR-Global", "DGSR-GAT")]),
]


def build_parser():
    parser = run_benchmarks.build_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--tables", nargs="+", default=None, help="table keys (default: all): "
                        + ", ".join(t["key"] for t in TABLES))
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of each table (smoke runs)")
    parser.add_argument("--skip-rows", nargs="+", default=None, help="rows (labels) not to run; the page lists "
                        "them as not run")
    parser.add_argument("--chosen-from", default=None, help="a run_benchmarks.py --work-dir: rows take the "
                        "configuration its tuned comparison chose for their model (row switches on top) and "
                        "are not tuned again")
    parser.add_argument("--keep-sections", action="store_true", help="keep the sections of the existing --output "
                        "page that this command does not run (another dataset, another table), each marked with "
                        "the command that wrote it")
    parser.set_defaults(output=os.path.join(HERE, "PAPER_TABLES.md"), work_dir=os.path.join(HERE, "out", "paper_tables"))
    return parser


SMOKE_BANNER = "**smoke test: not converged/tuned enough to rank models**"


def section_title(table, dataset, protocol):
    return f"## {table['title']} on {dataset}" + (f", eval_protocol {protocol}" if protocol else "")


def _protocol_of(entry):
    return None if entry.get("eval_protocol") in (None, "next_item") else entry["eval_protocol"]


def earlier_sections(output):
    """The sections of the page at ``output`` (and its JSON) as ``{(table key, dataset, protocol):
    summary entry with its lines}``; empty when there is no page. Entries of a page whose JSON
    predates ``lines`` take their lines from the Markdown, cut at the section headings."""
    import json

    json_path = os.path.splitext(output)[0] + ".json"
    if not (os.path.isfile(output) and os.path.isfile(json_path)):
        return {}
    with open(json_path, encoding="utf-8") as f:
        earlier = json.load(f)
    with open(output, encoding="utf-8") as f:
        page = f.read().splitlines()
    headings = [i for i, line in enumerate(page) if line.startswith("## ")] + [len(page)]
    by_title = {page[a]: page[a:b] for a, b in zip(headings, headings[1:])}
    smoke_page = SMOKE_BANNER in page[:headings[0]]
    written = next((found.group(1) for line in page[:headings[0]] if line.startswith("- wall time:")
                    for found in [re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d UTC)\)", line)] if found), None)
    tables = {t["key"]: t for t in TABLES}
    found = {}
    for entry in earlier.get("tables", []):
        table = tables.get(entry.get("table"))
        if table is None:
            continue
        protocol = _protocol_of(entry)
        lines = entry.get("lines") or by_title.get(section_title(table, entry["dataset"], protocol))
        if lines:
            found[(table["key"], entry["dataset"], protocol)] = dict(
                entry, lines=list(lines), command=entry.get("command", earlier.get("command")),
                smoke=entry.get("smoke", smoke_page), written=entry.get("written", written))
    return found


def load_chosen(results_dir, dataset, overrides):
    """The tuned comparison of ``run_benchmarks.py`` in ``results_dir`` for ``dataset``:
    ``({label: chosen values}, its number of trials per model)``. Refuses one made under another
    shared setting (dimensions, lengths, epoch cap), whose choices would not transfer."""
    import json

    path = os.path.join(os.path.abspath(results_dir), dataset, "comparison.json")
    if not os.path.isfile(path):
        raise ValueError(f"--chosen-from: no tuned comparison {path} (run benchmarks/run_benchmarks.py first)")
    with open(path, encoding="utf-8") as f:
        source = json.load(f)
    theirs = source["setting"]["overrides"]
    for key, value in overrides.items():
        if key not in ("seed", "state", "show_progress") and key in theirs and theirs[key] != value:
            raise ValueError(f"--chosen-from: {path} was tuned with {key}={theirs[key]!r}, this run has {value!r}")
    chosen = {label: dict(model.get("chosen") or {}) for label, model in source["models"].items()}
    trials = min((len(model.get("trials") or []) for model in source["models"].values()), default=0)
    return chosen, trials


def entries_of(table, rows=None, chosen=None, skip=None):
    """SASRec and one entry per row. With ``chosen`` (label -> values of a tuned comparison) every
    row starts from its model's chosen values (or the table's ``inherit_from`` label's) and its own
    switches win; in a ``tuned_rows`` table only SASRec takes its chosen values, the rows keep their
    switches alone (tuned here)."""
    from recbole_ext.compare import Entry

    selected = table["rows"][:rows] if rows else table["rows"]
    if skip:
        selected = [row for row in selected if row[0] not in skip]
    if chosen is None:
        return [Entry(BASELINE, BASELINE)] + [Entry(label, table["model"], switches) for label, switches, _ in selected]
    source = table.get("inherit_from") or table["model"]
    for label in (BASELINE,) + (() if table.get("tuned_rows") else (source,)):
        if label not in chosen:
            raise ValueError(f"--chosen-from: the tuned comparison has no {label}")
    inherited = {} if table.get("tuned_rows") else chosen[source]
    return [Entry(BASELINE, BASELINE, dict(chosen[BASELINE]))] + [
        Entry(label, table["model"], dict(inherited, **switches)) for label, switches, _ in selected
    ]


def section_key(table, dataset, protocol):
    return f"{table['key']}-{dataset}" + (f"-{protocol}" if protocol else "")


def runs_folder(args, dataset, protocol):
    """One folder of run records per dataset and protocol, shared by the tables: SASRec and a row
    that several tables hold (same label, same switches) are trained once. A label that two tables
    use for different switches is refused by the record check of ``run_one``."""
    return os.path.join(os.path.abspath(args.work_dir), dataset + (f"-{protocol}" if protocol else ""))


def tuned_here(table, args, chosen, reuse_from):
    """How many trials each row of ``table`` gets in this command: ``--tune``, none under
    ``--chosen-from``, or that comparison's own number for a ``tuned_rows`` table."""
    if chosen is None:
        return args.tune
    return reuse_from[1] if table.get("tuned_rows") else 0


def run_table(table, dataset, args, protocol=None, chosen=None, reuse_from=None):
    """The comparison of one table's rows and SASRec on ``dataset`` (tuned here, or from ``chosen``;
    a run ``reuse_from``'s comparison already holds with the same configuration is copied); returns ``(comparison dict or None, output folder, wall seconds, error text or None)``."""
    from recbole_ext.compare import run_comparison

    output_dir = runs_folder(args, dataset, protocol)
    if table.get("inherit_from") and chosen is None:
        return None, output_dir, 0.0, (f"needs --chosen-from: its rows take {table['inherit_from']}'s chosen "
                                       "configuration")
    tune = tuned_here(table, args, chosen, reuse_from)
    if chosen is not None and tune:  # its records are made under another setting (a tuned one)
        output_dir += "-tuned-rows"
    overrides = run_benchmarks.shared_overrides(args)
    if protocol:
        overrides["eval_protocol"] = protocol
    started = time.perf_counter()
    try:
        _, comparison = run_comparison(
            entries_of(table, args.rows, chosen, args.skip_rows), dataset, overrides, output_dir=output_dir,
            tune=tune, repeats=args.repeats, baseline=BASELINE, metric=METRIC,
            quiet=True, reuse_from=reuse_from, jobs=args.jobs,
        )
        error = None
    except Exception as failure:  # a table that cannot run (e.g. missing side information) is a row
        comparison, error = None, f"{type(failure).__name__}: {failure}"
    return comparison, output_dir, time.perf_counter() - started, error


def per_user_of(comparison, output_dir):
    from recbole_ext.compare import _safe_file_name, load_per_user

    found = {}
    for label, model in comparison["models"].items():
        found[label] = {}
        for seed in model["seeds"]:
            values = load_per_user(os.path.join(output_dir, "runs", f"{_safe_file_name(label)}-seed{seed}.npz"))
            if values is not None:
                found[label][seed] = values
    return found


def check_claims(table, comparison, output_dir, test="wilcoxon"):
    """For every ordering the paper claims: our change of the better row over the worse one, its
    p-value, whether our ordering agrees and whether the difference is significant."""
    from recbole_ext import stats
    from recbole_ext.compare import SIGNIFICANCE_LEVEL, pooled_pairs

    per_user = per_user_of(comparison, output_dir)
    checked = []
    for better, worse in table["claims"]:
        if better not in per_user or worse not in per_user:
            continue
        pairs = pooled_pairs(per_user[better], per_user[worse], METRIC)
        if pairs is None:
            continue
        result = stats.compare_paired(*pairs, test=test)
        agrees = result["change"] is not None and result["change"] > 0
        checked.append(dict(result, better=better, worse=worse, agrees=agrees,
                            significant=result["p_value"] < SIGNIFICANCE_LEVEL))
    return checked


def _cell(cell):
    if not cell or cell.get("mean") is None:
        return "-"
    return f"{cell['mean']:.4f}" + (f" ± {cell['std']:.4f}" if cell.get("std") is not None else "")


def table_section(table, dataset, comparison, claims, wall, error, rows=None, protocol=None, inherited=False,
                  skip=None, tuned=0):
    lines = [section_title(table, dataset, protocol), ""]
    if comparison is None:
        return lines + [f"not run: {error}", ""]
    if inherited and tuned:
        lines.append(f"- protocol of this section: its rows are tuned here, {tuned} Hyperopt trials each over the "
                     f"model's search space minus the row's switches, as many as {BASELINE} had; {BASELINE} keeps "
                     "its tuned choice ('chosen' shows both)")
    elif inherited and table.get("inherit_from"):
        lines.append(f"- protocol of this section: no row is tuned; its rows take {table['inherit_from']}'s chosen "
                     f"configuration (not {table['model']}'s) with the row's switches on top ('inherited' shows it)")
    lines += [f"- wall time: {wall / 60:.1f} min; seeds: {', '.join(map(str, comparison['setting']['seeds']))}",
              f"- against {BASELINE} and between rows: {comparison['test']} over (test user, seed) pairs; "
              "* p < 0.05", "",
              f"| row | switches | test NDCG@10 | vs {BASELINE} | {'inherited' if inherited and not tuned else 'chosen'} | "
              f"paper ({table['paper_metric']}) |",
              "|---|---|---|---|---|---|"]
    models = comparison["models"]
    for label, switches, paper in [(BASELINE, {}, None)] + (table["rows"][:rows] if rows else table["rows"]):
        row = models.get(label)
        text = ", ".join(f"{k}={v}" for k, v in switches.items()) or "-"
        if row is None:
            status = "not run (--skip-rows)" if label in (skip or ()) else "failed"
            lines.append(f"| {label} | {text} | {status} | - | - | {paper if paper is not None else '-'} |")
            continue
        # a row tuned here shows what it chose, an inherited one the values it took
        values = row["chosen"] or {k: v for k, v in row["fixed"].items() if k not in switches}
        chosen = ", ".join(f"{k}={run_benchmarks._short(v)}" for k, v in values.items()) or "-"
        lines.append(f"| {label} | {text} | {_cell(row['test'].get(METRIC))} | "
                     f"{run_benchmarks._change_text(row['test'].get(METRIC))} | {chosen} | "
                     f"{paper if paper is not None else '-'} |")
    lines += ["", "The paper's orderings against ours:", "",
              "| paper: above | paper: below | our change | p | our order agrees | significant |",
              "|---|---|---|---|---|---|"]
    for claim in claims:
        ci = claim["change_ci"]
        change = "-" if claim["change"] is None else f"{100 * claim['change']:+.1f}%" + (
            f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")
        lines.append(f"| {claim['better']} | {claim['worse']} | {change} | {claim['p_value']:.2g} | "
                     f"{'yes' if claim['agrees'] else 'NO'} | {'yes' if claim['significant'] else 'no'} |")
    if not claims:
        lines.append("| - | - | - | - | - | - |")
    return lines + [""]


def shared_setting(args):
    """The settings every row of a section shares (``run_benchmarks.shared_overrides`` less the
    logging keys), as JSON would give them back."""
    import json

    found = run_benchmarks.shared_overrides(args)
    return json.loads(json.dumps({k: v for k, v in found.items() if k not in ("show_progress", "state")},
                                 default=str))


def setting_of_section(entry):
    """A kept section's shared setting: recorded with it, or (sections written before they
    recorded it) read back from the command that wrote it; None when neither gives one."""
    if entry.get("shared_setting") is not None:
        return entry["shared_setting"]
    tokens = shlex.split(entry.get("command") or "")
    if tokens[1:2] != ["benchmarks/paper_tables.py"]:
        return None
    args, _ = build_parser().parse_known_args(tokens[2:])
    return shared_setting(args)


def setting_difference_line(theirs, ours):
    """One line when a kept section's shared setting is not this command's, else None."""
    if theirs is None:
        return "- its shared setting is not recorded: compare it with the sections above with care"
    differ = [key for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
    if not differ:
        return None
    return ("- its shared setting differs from this command's: "
            + ", ".join(f"{key}={theirs.get(key)!r} (here {ours.get(key)!r})" for key in differ))


def _write_atomically(path, text):
    """A temporary name, then a rename: an interrupted run leaves the earlier page whole."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from recbole_ext.registry import get_model

    keys = run_benchmarks._split_names(args.tables) if args.tables else [t["key"] for t in TABLES]
    unknown = sorted(set(keys) - {t["key"] for t in TABLES})
    if unknown:
        raise SystemExit(f"paper_tables.py: unknown table(s) {', '.join(unknown)}; the tables are "
                         + ", ".join(t["key"] for t in TABLES))
    datasets = run_benchmarks._split_names(args.datasets) if args.datasets else None
    for table in TABLES:
        get_model(table["model"])
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/paper_tables.py"]
                                   + (sys.argv[1:] if argv is None else list(argv)))
    started = datetime.datetime.now(datetime.timezone.utc)
    kept = earlier_sections(args.output) if args.keep_sections else {}
    sections, summary, source_trials = {}, {}, []
    for table in (t for t in TABLES if t["key"] in keys):
        for dataset in (d for d in table["datasets"] if datasets is None or d in datasets):
            chosen, reuse_from = None, None
            if args.chosen_from:
                chosen, trials = load_chosen(args.chosen_from, dataset, run_benchmarks.shared_overrides(args))
                source_trials.append(trials)
                # SASRec and a row equal to its model's tuned choice were already run there
                reuse_from = (os.path.join(os.path.abspath(args.chosen_from), dataset), trials)
            for protocol in table["protocols"]:
                print(f"[paper_tables] {section_key(table, dataset, protocol)} ...", flush=True)
                comparison, output_dir, wall, error = run_table(table, dataset, args, protocol, chosen, reuse_from)
                claims = check_claims(table, comparison, output_dir) if comparison else []
                key = (table["key"], dataset, protocol)
                sections[key] = table_section(table, dataset, comparison, claims, wall, error, args.rows, protocol,
                                              inherited=chosen is not None, skip=args.skip_rows,
                                              tuned=tuned_here(table, args, chosen, reuse_from))
                summary[key] = {"table": table["key"], "dataset": dataset, "eval_protocol": protocol or "next_item",
                                "error": error, "claims": claims, "wall_seconds": wall}
    finished = datetime.datetime.now(datetime.timezone.utc)
    tuned = min(source_trials, default=0) if args.chosen_from else args.tune
    budget = argparse.Namespace(**dict(vars(args), tune=tuned))
    smoke = not run_benchmarks.is_full_budget(budget) or bool(args.rows)
    ours = shared_setting(args)
    for key, entry in summary.items():
        entry.update(lines=sections[key], command=command, written=f"{started:%Y-%m-%d %H:%M} UTC", smoke=smoke,
                     shared_setting=ours)
    kept = {key: entry for key, entry in kept.items() if key not in summary}
    for key, entry in kept.items():
        if not entry.get("kept"):  # marked once, by the first run that keeps it
            when = f" ({entry['written']})" if entry.get("written") else ""
            entry["lines"] = entry["lines"][:1] + [f"- kept from an earlier run (`--keep-sections`): "
                                                   f"`{entry['command']}`{when}"] + entry["lines"][1:]
        entry["kept"] = True
        summary[key] = entry
        # judged against each command that keeps it, so the note is on the page, not in the stored lines
        difference = setting_difference_line(setting_of_section(entry), ours)
        sections[key] = entry["lines"][:2] + [difference] + entry["lines"][2:] if difference else entry["lines"]
    # the page in the order of TABLES, then of the datasets and protocols each table runs on
    order = {(t["key"], d, p): (i, j, k) for i, t in enumerate(TABLES) for j, d in enumerate(ANY_DATASET)
             for k, p in enumerate(t["protocols"])}
    ordered = sorted(sections, key=lambda key: order.get(key, (len(TABLES), 0, 0)))
    lines = ["# The papers' ablation tables, equally tuned", ""]
    if smoke:
        lines += [f"{SMOKE_BANNER} (budget: {tuned} trials, {args.repeats} seeds, {args.epochs} epochs at most)", ""]
    elif any(entry.get("smoke") for entry in kept.values()):
        lines += [f"{SMOKE_BANNER}: a section kept from an earlier run (`--keep-sections`) was a smoke run", ""]
    if args.chosen_from:
        protocol_line = (
            f"- protocol: no row is tuned here. Every row takes the configuration that the tuned comparison of "
            f"`benchmarks/run_benchmarks.py` ({tuned} Hyperopt trials per model, chosen on validation NDCG@10 "
            f"only) chose for the table's model, with the row's switches on top, and {BASELINE} its own chosen "
            f"configuration; each is trained with early stopping (epoch cap {args.epochs}) and tested on "
            f"{args.repeats} seed(s). One tuned configuration for all rows of a table can favour the full "
            "model; the 'inherited' column shows it"
        )
        own = [t["key"] for t in TABLES if t["key"] in keys and t["tuned_rows"]]
        if own:
            protocol_line += (f". Except in {', '.join(own)}: its rows are tuned here, with as many trials "
                              "(its section says so)")
        borrowed = [t["key"] for t in TABLES if t["key"] in keys and t["inherit_from"]]
        if borrowed:
            protocol_line += (f". Except in {', '.join(borrowed)}: its rows take another model's choice "
                              "(its section says whose)")
    else:
        protocol_line = (
            f"- protocol: every row and {BASELINE} get {args.tune} Hyperopt trials (RecBole HyperTuning) over "
            "the model's search space minus the row's switches, chosen on validation NDCG@10 only, early "
            f"stopping, epoch cap {args.epochs}; the chosen configuration tested on {args.repeats} seed(s)"
        )
    lines += ["Written by `benchmarks/paper_tables.py`; nothing in this file is typed by hand.", "",
              f"- command: `{command}`",
              f"- wall time: {(finished - started).total_seconds() / 60:.1f} min ({started:%Y-%m-%d %H:%M} UTC)",
              protocol_line,
              "- shared setting: " + ", ".join(f"{k}={v}" for k, v in ours.items()),
              "- paper orderings: from each paper's table values, or its text where it gives a figure only"]
    if kept:
        lines.append("- sections kept from earlier runs (`--keep-sections`; each names the command that wrote it, "
                     "and the lines above describe this command's sections only): "
                     + ", ".join(section_key(next(t for t in TABLES if t["key"] == k[0]), k[1], k[2]) for k in
                                 (key for key in ordered if key in kept)))
    shown = {key[0] for key in sections}
    left_out = [t["key"] for t in TABLES if t["key"] not in shown]
    if left_out:
        lines.append(("- tables neither run nor kept: " if kept else "- tables this command did not run (`--tables`): ")
                     + ", ".join(left_out))
    lines.append("")
    for key in ordered:
        lines += sections[key]
    import json

    # the JSON first: it holds every section's lines, which --keep-sections reads back
    _write_atomically(os.path.splitext(args.output)[0] + ".json",
                      json.dumps({"command": command, "tables": [summary[key] for key in ordered]}, indent=2,
                                 default=str))
    _write_atomically(args.output, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
