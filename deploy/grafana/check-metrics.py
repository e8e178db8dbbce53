#!/usr/bin/env python3
"""Checks that every metric a Grafana dashboard queries exists on the engine.

A renamed or missing metric does not break a dashboard loudly: its panel just goes
empty, and on-call finds out during an incident. So the test command runs this
against live nodes:

    check-metrics.py DASHBOARD.json SOURCE...   (SOURCE: a /metrics URL or a file)
    check-metrics.py --self-test                (the PromQL name extractor's own tests)

Exit 0 when every source exposes every metric the dashboard's PromQL (panel targets
and template variable queries) names, 1 naming each missing one, 2 on bad input.
Python 3.11 standard library only.
"""

import json
import re
import sys
import urllib.request

# Words of PromQL that look like metric names but are not.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan",
}
# Aggregation operators: may be followed by `by (...)` before their `(`.
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Clauses whose parenthesised list holds label names, not metrics.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\])
    | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:[a-zA-Z]+\d*)*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<brace>\{)
    | (?P<range>\[[^\]]*\])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def metric_names(expr):
    """Returns the set of metric names a PromQL expression selects.

    Grafana variables (`$node`, `${node}`, `[[node]]`, `$__rate_interval`) stand for
    label values or durations, never for names here, so they are dropped; label
    matchers, durations, function names, operators and `by (...)` lists are skipped.
    A selector written as `{__name__="x"}` counts as the metric `x`.
    """
    tokens = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        kind = m.lastgroup
        if kind == "brace":
            end = _closing_brace(expr, m.end())
            tokens.append(("matchers", expr[m.end():end]))
            pos = end + 1
            continue
        # A range or subquery `[5m:10s]` holds durations, never names.
        if kind not in ("space", "comment", "variable", "range"):
            tokens.append((kind, m.group()))
        pos = m.end()

    names = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if kind == "matchers":
            names.update(_name_matchers(text))
        elif kind == "ident" and text.lower() in LABEL_LISTS and following[1] == "(":
            i = _skip_parens(tokens, i + 1)
            continue
        elif kind == "ident" and text.lower() not in KEYWORDS and text.lower() not in AGGREGATIONS:
            if following[1] != "(":
                names.add(text)
        i += 1
    return names


def template_query_names(query):
    """Metric names in a Grafana Prometheus variable query (label_values(...) and friends)."""
    m = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.DOTALL)
    if m:
        args = m.group(1)
        # label_values(label) names no metric; label_values(expr, label) queries expr.
        head, _, _ = args.rpartition(",")
        return metric_names(head) if head else set()
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL)
    if m:
        return metric_names(m.group(1))
    if re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", query, re.DOTALL):
        return set()
    return metric_names(query)


def dashboard_names(dashboard):
    """Maps each metric name the dashboard queries to where (panel titles) it is used."""
    used = {}

    def note(names, where):
        for name in names:
            used.setdefault(name, []).append(where)

    def walk(panels):
        for panel in panels or []:
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if isinstance(expr, str) and expr.strip():
                    note(metric_names(expr), panel.get("title") or "untitled panel")
            walk(panel.get("panels"))

    walk(dashboard.get("panels"))
    for row in dashboard.get("rows") or []:  # the pre-5.0 layout
        walk(row.get("panels"))
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if isinstance(query, str) and query.strip():
            note(template_query_names(query), "variable $" + var.get("name", "?"))
    return used


def group_families(used):
    """Groups `x_bucket`, `x_sum` and `x_count` under the histogram `x` when the dashboard
    queries `x_bucket`, so that one missing histogram is reported once. Sorted lists."""
    histograms = {n[: -len("_bucket")] for n in used if n.endswith("_bucket")}
    families = {}
    for name in used:
        family = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in histograms:
                family = name[: -len(suffix)]
        families.setdefault(family, []).append(name)
    return {f: sorted(names) for f, names in families.items()}


def exposed_names(text):
    """The sample names in a Prometheus text exposition. A family declared by `# TYPE`
    counts too, with the series names its type implies, so that a histogram that has
    seen no observation yet is not reported missing."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                family, kind = parts[2], parts[3]
                if kind in ("histogram", "gaugehistogram"):
                    names.update(family + s for s in HISTOGRAM_SUFFIXES)
                elif kind == "summary":
                    names.update((family, family + "_sum", family + "_count"))
                else:
                    names.add(family)
        elif line and not line.startswith("#"):
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
            if m:
                names.add(m.group())
    return names


def read_source(source):
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as response:
            return response.read().decode("utf-8", "replace")
    with open(source, encoding="utf-8") as f:
        return f.read()


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) < 3 or argv[1].startswith("-"):
        print("usage: check-metrics.py DASHBOARD.json SOURCE... | --self-test", file=sys.stderr)
        return 2
    dashboard_path, sources = argv[1], argv[2:]
    try:
        with open(dashboard_path, encoding="utf-8") as f:
            used = dashboard_names(json.load(f))
    except (OSError, ValueError) as e:
        print(f"check-metrics: {dashboard_path}: {e}", file=sys.stderr)
        return 2
    if not used:
        print(f"check-metrics: {dashboard_path} queries no metric; wrong file?", file=sys.stderr)
        return 2
    status = 0
    for source in sources:
        try:
            exposed = exposed_names(read_source(source))
        except (OSError, ValueError) as e:
            print(f"check-metrics: {source}: cannot read: {e}", file=sys.stderr)
            status = 1
            continue
        families = group_families(used)
        missing = {f: [n for n in names if n not in exposed] for f, names in families.items()}
        missing = {f: names for f, names in sorted(missing.items()) if names}
        if not missing:
            print(f"check-metrics: {source}: all {len(families)} metrics of the dashboard are there")
            continue
        status = 1
        print(f"check-metrics: {source}: {len(missing)} of {len(families)} metrics of the dashboard are missing:")
        for family, names in missing.items():
            series = "" if names == [family] else " (" + ", ".join(names) + ")"
            panels = ", ".join(sorted({p for n in names for p in used[n]}))
            print(f"  missing {family}{series}; used by: {panels}")
    return status


def self_test():
    cases = [
        ('sum by (node, shard) (chat_connections{node=~"$node"})', {"chat_connections"}),
        ("histogram_quantile(0.99, sum by (le, node) "
         "(rate(chat_fanout_latency_seconds_bucket{node=~\"$node\"}[$__rate_interval])))",
         {"chat_fanout_latency_seconds_bucket"}),
        ("sum without(shard)(rate(a_total[5m] offset 1h)) / on(node) group_left(kind) b",
         {"a_total", "b"}),
        ('rate(x_sum{job="a,b}"}[${__rate_interval}]) / rate(x_count[1m:10s])', {"x_sum", "x_count"}),
        ('{__name__="up", node="by"} or vector(0)', {"up"}),
        ('count(chat_kafka_connected{node=~"[[node]]"} == 0) > bool 1e3', {"chat_kafka_connected"}),
        ("topk(5, sum by (kind) (increase(chat_errors_total[1h]))) and ignoring (kind) c:rule:rate5m",
         {"chat_errors_total", "c:rule:rate5m"}),
        ("max_over_time(m[1h] @ end()) - 0x1F # comment with fake_name", {"m"}),
        ("label_replace(metric_a, \"dst\", \"$1\", \"src\", \"(.*)\")", {"metric_a"}),
    ]
    failures = 0
    for expr, want in cases:
        got = metric_names(expr)
        if got != want:
            failures += 1
            print(f"self-test: {expr!r}: got {sorted(got)}, want {sorted(want)}", file=sys.stderr)
    for query, want in [
        ("label_values(chat_connections, node)", {"chat_connections"}),
        ('label_values(chat_errors_total{kind!="io"}, kind)', {"chat_errors_total"}),
        ("label_values(node)", set()),
        ("query_result(topk(3, x))", {"x"}),
        ("metrics(chat_.*)", set()),
    ]:
        got = template_query_names(query)
        if got != want:
            failures += 1
            print(f"self-test: variable {query!r}: got {sorted(got)}, want {sorted(want)}", file=sys.stderr)
    got = group_families({"h_bucket": [], "h_sum": [], "c_count": [], "c_total": []})
    if got != {"h": ["h_bucket", "h_sum"], "c_count": ["c_count"], "c_total": ["c_total"]}:
        failures += 1
        print(f"self-test: families: got {got}", file=sys.stderr)
    exposition = "# TYPE h histogram\n# TYPE c counter\nc_total{node=\"a\"} 1\ng 2\n"
    want = {"h_bucket", "h_sum", "h_count", "c", "c_total", "g"}
    if exposed_names(exposition) != want:
        failures += 1
        print(f"self-test: exposition: got {sorted(exposed_names(exposition))}", file=sys.stderr)
    print(f"check-metrics: self-test: {failures} failure(s)")
    return 1 if failures else 0


def _closing_brace(expr, start):
    """Index of the `}` closing a label-matcher block opened before `start` (quotes respected)."""
    i = start
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            m = TOKEN.match(expr, i)
            i = m.end()
            continue
        if c == "}":
            return i
        i += 1
    return len(expr)


def _name_matchers(block):
    """Metric names from `__name__="x"` matchers in a `{...}` block (regex matchers skipped)."""
    pattern = r"""__name__\s*=(?![=~])\s*(?:"([A-Za-z_:][A-Za-z0-9_:]*)"|'([A-Za-z_:][A-Za-z0-9_:]*)')"""
    return {m.group(1) or m.group(2) for m in re.finditer(pattern, block)}


def _skip_parens(tokens, i):
    """Index after the parenthesised list starting at tokens[i] (a `(`)."""
    depth = 0
    while i < len(tokens):
        if tokens[i][1] == "(":
            depth += 1
        elif tokens[i][1] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


if __name__ == "__main__":
    sys.exit(main(sys.argv))
