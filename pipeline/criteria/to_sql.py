"""The criteria language compiled to SQL: one function per node type, building a sqlglot AST.

A criterion becomes one `WITH ... SELECT` query whose result has one row per patient:
`patient_id, status, <evidence...>`. Each node adds named CTEs (prefixed by its place
in the tree, so a database administrator can follow them) and returns the name of the
CTE holding its per-patient result. Nothing is pasted as text: values are typed
literals (floats as `CAST('6.5' AS DOUBLE)`, exact to the last bit in every dialect),
and the reference date is the named parameter `as_of` (`$as_of` in DuckDB, `:as_of`
in Spark), which is also where a per-patient date can later come in.

The hand-written blocks, `sql/blocks/*.sql` (the two progression blocks and the EDSS
levels they share), are parsed into the same AST; their `$name` placeholders are
replaced by typed literals of the node's fields.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Callable

import sqlglot
from sqlglot import exp

from pipeline.criteria import contract
from pipeline.criteria.nodes import FAIL, PASS, SCREENING, UNKNOWN, Node, registrar
from pipeline.criteria.paths import sql_dir

PID = "patient_id"
DIALECTS = ("duckdb", "spark")


# ---------------------------------------------------------------- literals and small builders

def lit(value) -> exp.Expression:
    """A typed literal: text, whole number, double (exact, via its shortest repr), boolean or NULL."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):
        return exp.cast(exp.Literal.string(repr(value)), exp.DataType.build("double"))
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[lit(v) for v in value])
    return exp.Literal.string(str(value))


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def D() -> exp.Expression:
    """The reference date."""
    return exp.cast(exp.Placeholder(this="as_of"), exp.DataType.build("date"))


def days_before(n: int) -> exp.Expression:
    return exp.Sub(this=D(), expression=exp.Literal.number(n))


def is_null(e: exp.Expression) -> exp.Expression:
    return e.copy().is_(exp.null())


def not_null(e: exp.Expression) -> exp.Expression:
    return exp.not_(is_null(e))


def case(pairs: list[tuple[exp.Expression, exp.Expression]], default: exp.Expression) -> exp.Case:
    c = exp.Case()
    for cond, then in pairs:
        c = c.when(cond, then)
    return c.else_(default)


def status_lit(s: str) -> exp.Expression:
    return exp.Literal.string(s)


def and_(*conds: exp.Expression) -> exp.Expression:
    conds = [c for c in conds if c is not None]
    return exp.and_(*conds) if conds else exp.true()


def or_(*conds: exp.Expression) -> exp.Expression:
    conds = [c for c in conds if c is not None]
    return exp.or_(*conds) if conds else exp.false()


def table(name: str, alias: str | None = None) -> exp.Table:
    t = exp.to_table(name)
    return t.as_(alias) if alias else t


def left_join_patients(source: str, cols: list[exp.Expression]) -> exp.Select:
    """SELECT p.patient_id, <cols> FROM patients p LEFT JOIN <source> r ON r.patient_id = p.patient_id."""
    return (exp.select(col(PID, "p"), *cols).from_(table("patients", "p"))
            .join(table(source, "r"), on=col(PID, "r").eq(col(PID, "p")), join_type="left"))


class Ctx:
    """Collects the CTEs of one criterion, named after the nodes' places in the tree."""

    def __init__(self):
        self.ctes: list[tuple[str, exp.Expression]] = []
        self.names: set[str] = set()

    @staticmethod
    def base_name(node: Node) -> str:
        """`n` for the criterion's root, `n_1` for its second child, `n_1_0` for that child's first..."""
        return "n" + re.sub(r"\.of\[(\d+)\]", r"_\1", node.path[len("rule"):]).replace(".rule", "_0")

    def cte(self, node: Node, step: str, query: exp.Expression) -> str:
        base = self.base_name(node)
        name = f"{base}_{step}" if step else base
        assert name not in self.names, name
        self.names.add(name)
        self.ctes.append((name, query))
        return name


COMPILERS: dict[str, Callable[[Node, Ctx], str]] = {}


compiles = registrar(COMPILERS)


def compile_node(node: Node, ctx: Ctx) -> str:
    return COMPILERS[node.type](node, ctx)


def criterion_query(node: Node) -> exp.Select:
    """The whole query of a criterion: its CTEs, then its result (one row per patient)."""
    ctx = Ctx()
    root = compile_node(node, ctx)
    query = exp.select(exp.Star()).from_(table(root))
    for name, q in ctx.ctes:
        query = query.with_(name, as_=q, copy=False)  # one query built up: no copy per CTE
    return query


def _double(text: str) -> exp.Expression:
    return exp.cast(exp.Literal.string(text), exp.DataType.build("double"))


def ieee_div(div: exp.Div) -> exp.Expression:
    """`x / y` with IEEE 754 results for a zero divisor (inf, -inf, NaN; NULL stays NULL), as DuckDB and
    Polars give them. Spark in ANSI mode (kept on) raises DIVIDE_BY_ZERO instead, so its division is
    guarded: the guard's values are typed literals, and the division itself runs only on y <> 0."""
    x, y = div.this, div.expression
    zero = exp.Literal.number(0)
    by_zero = case([(is_null(x), exp.cast(exp.null(), exp.DataType.build("double"))),
                    (x.copy() > zero.copy(), _double("Infinity")), (x.copy() < zero.copy(), _double("-Infinity"))],
                   _double("NaN"))
    return case([(y.copy().eq(zero.copy()), by_zero)], div.copy())


def for_dialect(query: exp.Expression, dialect: str) -> exp.Expression:
    """The query as `dialect` must run it to mean what DuckDB means. One model, rendered per dialect:
    sqlglot translates the functions (date_diff, list_contains, ...); what it leaves to the engine's
    semantics is rewritten here. Spark: division by zero (an error under ANSI mode) gives IEEE results."""
    if dialect == "spark":
        return query.transform(lambda e: ieee_div(e) if isinstance(e, exp.Div) else e)
    return query


def render(query: exp.Expression, dialect: str, pretty: bool = True) -> str:
    return for_dialect(query, dialect).sql(dialect=dialect, pretty=pretty)


# ---------------------------------------------------------------- row filters and windows

def _nodots(e: exp.Expression) -> exp.Expression:
    return exp.func("replace", e, exp.Literal.string("."), exp.Literal.string(""))


def _prefixed(c: exp.Expression, prefixes: list[str]) -> exp.Expression:
    hits = [exp.StartsWith(this=_nodots(c.copy()), expression=exp.Literal.string(p.replace(".", "")))
            for p in prefixes]
    return and_(not_null(c), or_(*hits)) if hits else exp.false()


def _in(c: exp.Expression, values: list) -> exp.Expression:
    return and_(not_null(c), c.copy().isin(*[lit(v) for v in values])) if values else exp.false()


PREDICATES: dict[str, Callable[[exp.Expression, object], exp.Expression]] = {
    "equals": lambda c, v: and_(not_null(c), c.copy().eq(lit(v))),
    "in": _in,
    "not_in": lambda c, v: exp.not_(exp.paren(_in(c, v))) if v else exp.true(),
    "prefix": _prefixed,
    "not_prefix": lambda c, v: exp.not_(exp.paren(_prefixed(c, v))) if v else exp.true(),
    "in_listed": lambda c, v: _in(c, v) if v else exp.true(),
    "prefix_listed": lambda c, v: _prefixed(c, v) if v else exp.true(),
    "empty": lambda c, v: is_null(c) if v else not_null(c),
    "min": lambda c, v: and_(not_null(c), c.copy() >= lit(v)),
    "max": lambda c, v: and_(not_null(c), c.copy() <= lit(v)),
}


def where_sql(where: dict) -> list[exp.Expression]:
    out = []
    for column, preds in where.items():
        if column == "any":
            out.append(exp.paren(or_(*[exp.paren(and_(*where_sql(sub))) for sub in preds])))
            continue
        out += [PREDICATES[key](col(column), value) for key, value in preds.items()]
    return out


def window_sql(tbl: str, within_days: int | None) -> exp.Expression:
    """Rows dated within the last `within_days` days before D (None: ever); see to_polars.window_expr."""
    if tbl in contract.EPISODE_DATES:
        start, end = (col(c) for c in contract.EPISODE_DATES[tbl])
        began = exp.paren(or_(is_null(start), start.copy() <= D()))
        if within_days is None:
            return began
        return and_(began, exp.paren(or_(is_null(end), end.copy() >= days_before(within_days))))
    date = col(contract.EVENT_DATE[tbl])
    if within_days is None:
        return and_(not_null(date), date.copy() <= D())
    return exp.Between(this=date, low=days_before(within_days), high=D())


# ---------------------------------------------------------------- composites

def _children(node: Node, ctx: Ctx) -> tuple[exp.Select, list[exp.Expression]]:
    names = [compile_node(child, ctx) for child in node.children]
    q = exp.select(col(PID, "c0")).from_(table(names[0], "c0"))
    for i, name in enumerate(names[1:], start=1):
        q = q.join(table(name, f"c{i}"), on=col(PID, f"c{i}").eq(col(PID, "c0")), join_type="inner")
    evidence = []
    for i, child in enumerate(node.children):
        evidence += [col(e, f"c{i}") for e in child.evidence()]
    return q, [col("status", f"c{i}") for i in range(len(names))], evidence


def _combine(node: Node, ctx: Ctx, first: str, second: str, last: str) -> str:
    """`first` if any child has it, else `second` if any has it, else `last` (three-valued all/any)."""
    q, statuses, evidence = _children(node, ctx)
    status = case([(or_(*[s.copy().eq(status_lit(first)) for s in statuses]), status_lit(first)),
                   (or_(*[s.copy().eq(status_lit(second)) for s in statuses]), status_lit(second))],
                  status_lit(last))
    return ctx.cte(node, "", q.select(status.as_("status"), *evidence))


@compiles("all")
def _all(node: Node, ctx: Ctx) -> str:
    return _combine(node, ctx, FAIL, UNKNOWN, PASS)


@compiles("any")
def _any(node: Node, ctx: Ctx) -> str:
    return _combine(node, ctx, PASS, UNKNOWN, FAIL)


@compiles("not")
def _not(node: Node, ctx: Ctx) -> str:
    child = compile_node(node.children[0], ctx)
    s = col("status")
    flipped = case([(s.eq(status_lit(PASS)), status_lit(FAIL)), (s.copy().eq(status_lit(FAIL)), status_lit(PASS))],
                   status_lit(UNKNOWN))
    return ctx.cte(node, "", exp.select(col(PID), flipped.as_("status"), *[col(e) for e in node.evidence()])
                   .from_(table(child)))


@compiles("screening")
def _screening(node: Node, ctx: Ctx) -> str:
    return ctx.cte(node, "", exp.select(col(PID), status_lit(SCREENING).as_("status")).from_(table("patients")))


# ---------------------------------------------------------------- the patient's own fields

@compiles("patient_code")
def _patient_code(node: Node, ctx: Ctx) -> str:
    c = col(node["column"])
    pairs = [(is_null(c), status_lit(node["missing"]))]
    pairs += [(_in(c, node[key]), status_lit(status)) for key, status in (("pass", PASS), ("unknown", UNKNOWN),
                                                                           ("fail", FAIL)) if node[key]]
    return ctx.cte(node, "", exp.select(col(PID), case(pairs, status_lit(node["otherwise"])).as_("status"))
                   .from_(table("patients")))


@compiles("date_on_or_before")
def _date_on_or_before(node: Node, ctx: Ctx) -> str:
    c = col(node["column"])
    status = case([(and_(not_null(c), c.copy() <= D()), status_lit(PASS))], status_lit(FAIL))
    return ctx.cte(node, "", exp.select(col(PID), status.as_("status")).from_(table("patients")))


def age_sql(birth: exp.Expression) -> exp.Expression:
    """Completed years at D: D.year - birth.year - ((D.month, D.day) < (birth.month, birth.day))."""
    before_birthday = case([
        (exp.Month(this=D()) < exp.Month(this=birth.copy()), exp.Literal.number(1)),
        (and_(exp.Month(this=D()).eq(exp.Month(this=birth.copy())), exp.Day(this=D()) < exp.Day(this=birth.copy())),
         exp.Literal.number(1))], exp.Literal.number(0))
    years = exp.Sub(this=exp.Sub(this=exp.Year(this=D()), expression=exp.Year(this=birth.copy())),
                    expression=before_birthday)
    return exp.cast(years, exp.DataType.build("bigint"))


@compiles("age")
def _age(node: Node, ctx: Ctx) -> str:
    # A birth date after D is not known at D (nothing dated after D is used): unknown, as empty.
    born = and_(not_null(col("birth_date")), col("birth_date") <= D())
    aged = ctx.cte(node, "aged", exp.select(col(PID), born.as_("born"),
                                            case([(born.copy(), age_sql(col("birth_date")))], exp.null()).as_("age"))
                   .from_(table("patients")))
    a = col("age")
    within = and_(a >= lit(node["min"]) if node["min"] is not None else None,
                  a.copy() <= lit(node["max"]) if node["max"] is not None else None)
    status = case([(exp.not_(col("born")), status_lit(UNKNOWN)), (within, status_lit(PASS))], status_lit(FAIL))
    return ctx.cte(node, "", exp.select(col(PID), status.as_("status"), col("age").as_(node["as"])).from_(table(aged)))


def _years(column: str, tbl: str | None = None) -> exp.Expression:
    # A date after D is not known at D: it counts as empty.
    c = col(column, tbl)
    days = exp.DateDiff(this=D(), expression=c, unit=exp.var("DAY"))
    return case([(c.copy() <= D(), exp.Div(this=exp.cast(days, exp.DataType.build("double")), expression=lit(365.25)))],
                exp.null())


@compiles("years_since")
def _years_since(node: Node, ctx: Ctx) -> str:
    cols = [col(PID), _years(node["column"]).as_("primary_years")]
    cols.append((_years(node["fallback"]) if node["fallback"] else exp.cast(exp.null(), exp.DataType.build("double")))
                .as_("fallback_years"))
    years = ctx.cte(node, "years", exp.select(*cols).from_(table("patients")))
    p, f, limit = col("primary_years"), col("fallback_years"), lit(node["max_years"])
    status = case([
        (not_null(p), case([(p.copy() < limit, status_lit(PASS))], status_lit(FAIL))),
        # The fallback date (diagnosis) can only follow the primary one (onset): that old already fails.
        (and_(not_null(f), f.copy() >= limit.copy()), status_lit(FAIL))], status_lit(UNKNOWN))
    return ctx.cte(node, "", exp.select(col(PID), status.as_("status"),
                                        exp.func("coalesce", p.copy(), f.copy()).as_(node["as"])).from_(table(years)))


# ---------------------------------------------------------------- events

@compiles("count")
def _count(node: Node, ctx: Ctx) -> str:
    tbl = node["table"]
    date = contract.EVENT_DATE.get(tbl) or contract.EPISODE_DATES[tbl][0]
    n = (exp.Count(this=exp.Distinct(expressions=[col(date)])) if node["distinct_dates"]
         else exp.Count(this=exp.Star()))
    rows = ctx.cte(node, "rows", exp.select(col(PID), n.as_("n")).from_(table(tbl))
                   .where(and_(*where_sql(node["where"]), window_sql(tbl, node["within_days"]))).group_by(col(PID)))
    count = exp.func("coalesce", col("n", "r"), exp.Literal.number(0))
    ok = and_(count >= lit(node["at_least"]) if node["at_least"] is not None else None,
              count.copy() <= lit(node["at_most"]) if node["at_most"] is not None else None)
    cols = [case([(ok, status_lit(PASS))], status_lit(node["otherwise"])).as_("status")]
    if node["as"]:
        cols.append(count.copy().as_(node["as"]))
    return ctx.cte(node, "", left_join_patients(rows, cols))


def latest_sql(node: Node, ctx: Ctx, step: str, tbl: str, column: str, days: int, tie: str,
               where: list[exp.Expression]) -> str:
    """CTE: per patient, the latest non-empty `column` dated in [D - days, D] (worst of a same-day tie): v, d."""
    date = contract.EVENT_DATE[tbl]
    recent = ctx.cte(node, f"{step}recent", exp.select(
        col(PID), col(date).as_("d"), col(column).as_("v"),
        exp.Window(this=exp.Max(this=col(date)), partition_by=[col(PID)]).as_("last_d"))
        .from_(table(tbl))
        .where(and_(not_null(col(column)), *where, exp.Between(this=col(date), low=days_before(days), high=D()))))
    worst = exp.Max(this=col("v")) if tie == "highest" else exp.Min(this=col("v"))
    return ctx.cte(node, f"{step}latest", exp.select(col(PID), worst.as_("v"), exp.Max(this=col("d")).as_("d"))
                   .from_(table(recent)).where(col("d").eq(col("last_d"))).group_by(col(PID)))


@compiles("latest_value")
def _latest_value(node: Node, ctx: Ctx) -> str:
    got = latest_sql(node, ctx, "", node["table"], node["column"], node["lookback_days"], node["tie"],
                     where_sql(node["where"]))
    v = col("v", "r")
    within = and_(v >= lit(node["min"]) if node["min"] is not None else None,
                  v.copy() <= lit(node["max"]) if node["max"] is not None else None)
    status = case([(is_null(v), status_lit(UNKNOWN)), (within, status_lit(PASS))], status_lit(FAIL))
    name = node["as"]
    return ctx.cte(node, "", left_join_patients(got, [status.as_("status"), v.copy().as_(name),
                                                      col("d", "r").as_(f"{name}_date")]))


# ---------------------------------------------------------------- custom blocks

def lab_results_sql(node: Node, ctx: Ctx, test: str, days: int, default_uln: float,
                    umol_per_mg_dl: float | None) -> str:
    """CTE: one test's results within `days` on each patient's latest date: ratio = value / ULN, mg_dl.

    See to_polars.lab_results: the ULN is the row's ref_high, else the default
    converted to the row's unit.
    """
    unit, value = col("unit"), col("value")
    if umol_per_mg_dl is None:
        default, mg_dl = lit(default_uln), exp.cast(exp.null(), exp.DataType.build("double"))
    else:
        mg_dl_unit = unit.eq(exp.Literal.string("mg/dL"))
        default = case([(mg_dl_unit, lit(default_uln / umol_per_mg_dl))], lit(default_uln))
        mg_dl = case([(mg_dl_unit.copy(), value.copy())], exp.Div(this=value.copy(), expression=lit(umol_per_mg_dl)))
    ratio = exp.Div(this=value.copy(), expression=exp.func("coalesce", col("ref_high"), default))
    recent = ctx.cte(node, "results", exp.select(
        col(PID), col("sample_date"), ratio.as_("ratio"), mg_dl.as_("mg_dl"),
        exp.Window(this=exp.Max(this=col("sample_date")), partition_by=[col(PID)]).as_("last_d"))
        .from_(table("labs"))
        .where(and_(col("test").eq(exp.Literal.string(test)),
                    exp.Between(this=col("sample_date"), low=days_before(days), high=D()))))
    return ctx.cte(node, "latest_results", exp.select(col(PID), col("ratio"), col("mg_dl")).from_(table(recent))
                   .where(col("sample_date").eq(col("last_d"))))


@compiles("lab_uln")
def _lab_uln(node: Node, ctx: Ctx) -> str:
    rows = lab_results_sql(node, ctx, node["test"], node["lookback_days"], node["default_uln"], node["umol_per_mg_dl"])
    # The worst of a same-day tie: the highest ratio.
    worst = ctx.cte(node, "worst", exp.select(col(PID), exp.Max(this=col("ratio")).as_("ratio"))
                    .from_(table(rows)).group_by(col(PID)))
    r = col("ratio", "r")
    status = case([(is_null(r), status_lit(UNKNOWN)), (r.copy() > lit(node["max_uln"]), status_lit(FAIL))],
                  status_lit(PASS))
    return ctx.cte(node, "", left_join_patients(worst, [status.as_("status"), r.copy().as_(node["as"])]))


@compiles("creatinine_clearance")
def _creatinine_clearance(node: Node, ctx: Ctx) -> str:
    rows = lab_results_sql(node, ctx, "CREAT", node["lab_lookback_days"], node["creat_default_uln_umol"],
                           node["creat_umol_per_mg_dl"])
    # The creatinine that lab_uln judges: highest ratio of a same-day tie, then highest mg/dL.
    rank = exp.Window(this=exp.RowNumber(), partition_by=[col(PID)],
                      order=exp.Order(expressions=[exp.Ordered(this=col("ratio"), desc=True, nulls_first=False),
                                                   exp.Ordered(this=col("mg_dl"), desc=True, nulls_first=False)]))
    ranked = ctx.cte(node, "creat_ranked", exp.select(col(PID), col("mg_dl"), rank.as_("rn")).from_(table(rows)))
    creat = ctx.cte(node, "creat", exp.select(col(PID), col("mg_dl").as_("creat_mg_dl")).from_(table(ranked))
                    .where(col("rn").eq(exp.Literal.number(1))))
    weight = latest_sql(node, ctx, "weight_", "visits", "weight_kg", node["weight_lookback_days"], "lowest", [])
    inputs = ctx.cte(node, "inputs", exp.select(
        col(PID, "p"), col("sex", "p"), col("creat_mg_dl", "c"), col("v", "w").as_("weight"),
        col("d", "w").as_("weight_date"), age_sql(col("birth_date", "p")).as_("age"))
        .from_(table("patients", "p"))
        .join(table(creat, "c"), on=col(PID, "c").eq(col(PID, "p")), join_type="left")
        .join(table(weight, "w"), on=col(PID, "w").eq(col(PID, "p")), join_type="left"))
    # Cockcroft-Gault, in the order the formula is written (every engine alike).
    male = exp.Div(this=exp.Mul(this=exp.cast(exp.Sub(this=exp.Literal.number(140), expression=col("age")),
                                              exp.DataType.build("double")), expression=col("weight")),
                   expression=exp.paren(exp.Mul(this=lit(72.0), expression=col("creat_mg_dl"))))
    both = ctx.cte(node, "both_sexes", exp.select(exp.Star(), male.as_("male")).from_(table(inputs)))
    sexes = ctx.cte(node, "clearance", exp.select(
        exp.Star(), exp.Mul(this=col("male"), expression=lit(node["female_factor"])).as_("female")).from_(table(both)))
    sex, m, f, lo = col("sex"), col("male"), col("female"), lit(node["min_crcl"])
    is_f, is_m = sex.eq(exp.Literal.string("F")), sex.copy().eq(exp.Literal.string("M"))
    # Unknown sex: decided only when the male and the female value agree.
    status = case([
        (is_null(m), status_lit(UNKNOWN)),
        (is_f, case([(f < lo, status_lit(FAIL))], status_lit(PASS))),
        (is_m, case([(m.copy() < lo.copy(), status_lit(FAIL))], status_lit(PASS))),
        (m.copy() < lo.copy(), status_lit(FAIL)),
        (f.copy() >= lo.copy(), status_lit(PASS))], status_lit(UNKNOWN))
    crcl = case([(is_f.copy(), f.copy()), (is_m.copy(), m.copy())], exp.null())
    return ctx.cte(node, "", exp.select(col(PID), status.as_("status"), crcl.as_("crcl"), col("creat_mg_dl"),
                                        col("weight"), col("weight_date")).from_(table(sexes)))


@cache
def _block_text(name: str) -> str:
    return (sql_dir() / "blocks" / f"{name}.sql").read_text("utf-8")


INCLUDE = re.compile(r"^-- include: (\w+)$", re.M)


def hand_written_block(node: Node, ctx: Ctx, name: str) -> str:
    """A hand-written block: parsed, its `$field` placeholders replaced by typed literals of the node's
    fields, its CTEs (and those of the blocks it includes with `-- include: NAME`) renamed after the
    node and hoisted into the criterion's query."""
    text = _block_text(name)
    prefix = Ctx.base_name(node)
    renames: dict[str, str] = {}

    def substitute(e: exp.Expression) -> exp.Expression:
        if isinstance(e, exp.Placeholder) and e.name == "as_of":
            return D()
        if isinstance(e, exp.Placeholder):
            if e.name not in node.args:
                raise KeyError(f"sql/blocks/{name}.sql uses ${e.name}, which the node has no field for")
            return lit(node.args[e.name])
        return e

    def rename(e: exp.Expression) -> exp.Expression:
        if isinstance(e, exp.Table) and not e.args.get("db") and e.name in renames:
            return exp.to_table(renames[e.name]).as_(e.alias or e.name)
        return e

    def hoist(tree: exp.Expression) -> exp.Expression:
        for c in tree.ctes:
            renames[c.alias] = f"{prefix}_{c.alias}"
            ctx.ctes.append((renames[c.alias], c.this.transform(rename)))
            ctx.names.add(renames[c.alias])
        body = tree.copy()
        body.set("with_", None)
        return body

    for included in INCLUDE.findall(text):
        hoist(sqlglot.parse_one(_block_text(included), read="duckdb").transform(substitute))
    body = hoist(sqlglot.parse_one(text, read="duckdb").transform(substitute))
    return ctx.cte(node, "", body.transform(rename))


@compiles("confirmed_progression")
def _confirmed_progression(node: Node, ctx: Ctx) -> str:
    return hand_written_block(node, ctx, "confirmed_progression")


@compiles("recent_progression")
def _recent_progression(node: Node, ctx: Ctx) -> str:
    return hand_written_block(node, ctx, "recent_progression")


# ---------------------------------------------------------------- activity: events, episodes, on-treatment periods

def event_dates_sql(node: Node, ctx: Ctx) -> tuple[str, str]:
    """CTEs of the distinct (patient_id, d) of the known events and of the possible events (known included),
    dated within the node's window; see to_polars.event_days."""
    def dates(step: str, possible: bool) -> str:
        parts = []
        for src in node["events"]:
            tbl = src["table"]
            known = and_(*where_sql(src["where"]))
            cond = exp.paren(or_(known, exp.paren(and_(*where_sql(src["possible"]))))) \
                if possible and src["possible"] is not None else known
            parts.append(exp.select(col(PID), col(contract.EVENT_DATE[tbl]).as_("d")).from_(table(tbl))
                         .where(and_(window_sql(tbl, node["window_days"]), cond)))
        union = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False)
        return ctx.cte(node, step, exp.select(col(PID), col("d")).distinct()
                       .from_(exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier("e")))))
    return dates("known_dates", False), dates("possible_dates", True)


def episode_count_sql(node: Node, ctx: Ctx, dates: str, step: str) -> str:
    """CTE patient_id, n: episodes counted up to min_episodes (see to_polars._episode_count)."""
    opened = ctx.cte(node, f"{step}_0", exp.select(col(PID), exp.Min(this=col("d")).as_("d"))
                     .from_(table(dates)).group_by(col(PID)))
    steps = [opened]
    for i in range(1, node["min_episodes"]):
        nxt = exp.Add(this=col("d", "s"), expression=exp.Literal.number(node["gap_days"]))
        opened = ctx.cte(node, f"{step}_{i}", exp.select(col(PID, "s"), exp.Min(this=col("d", "x")).as_("d"))
                         .from_(table(opened, "s"))
                         .join(table(dates, "x"), on=and_(col(PID, "x").eq(col(PID, "s")), col("d", "x") >= nxt),
                               join_type="inner")
                         .group_by(col(PID, "s")))
        steps.append(opened)
    total = exp.Literal.number(0)
    q = exp.select(col(PID, "p")).from_(table("patients", "p"))
    for i, name in enumerate(steps):
        q = q.join(table(name, f"s{i}"), on=col(PID, f"s{i}").eq(col(PID, "p")), join_type="left")
        total = exp.Add(this=total, expression=case([(not_null(col("d", f"s{i}")), exp.Literal.number(1))],
                                                     exp.Literal.number(0)))
    return ctx.cte(node, step, q.select(exp.cast(total, exp.DataType.build("bigint")).as_("n")))


@compiles("episodes")
def _episodes(node: Node, ctx: Ctx) -> str:
    known, possible = event_dates_sql(node, ctx)
    kn, pn = episode_count_sql(node, ctx, known, "known"), episode_count_sql(node, ctx, possible, "possible")
    k, name = lit(node["min_episodes"]), node["as"]
    status = case([(col("n", "k") >= k, status_lit(PASS)), (col("n", "q") >= k.copy(), status_lit(UNKNOWN))],
                  status_lit(FAIL))
    return ctx.cte(node, "", exp.select(col(PID, "k"), status.as_("status"), col("n", "k").as_(f"{name}_known"),
                                        col("n", "q").as_(f"{name}_possible"))
                   .from_(table(kn, "k")).join(table(pn, "q"), on=col(PID, "q").eq(col(PID, "k")), join_type="inner"))


@compiles("events_during")
def _events_during(node: Node, ctx: Ctx) -> str:
    tbl, offset = node["table"], exp.Literal.number(node["start_offset_days"])
    start, end = (col(c) for c in contract.EPISODE_DATES[tbl])
    qualifying = [*where_sql(node["where"]), not_null(start), start.copy() <= D()]
    periods = ctx.cte(node, "periods", exp.select(
        col(PID), exp.Add(this=start.copy(), expression=offset).as_("lo"),
        case([(and_(not_null(end), end.copy() <= D()), end.copy())], D()).as_("hi"))
        .from_(table(tbl)).where(and_(*qualifying)))
    known, possible = event_dates_sql(node, ctx)

    def during(dates: str, step: str) -> str:
        return ctx.cte(node, step, exp.select(col(PID, "e")).distinct().from_(table(dates, "e"))
                       .join(table(periods, "t"), on=and_(col(PID, "t").eq(col(PID, "e")), col("hi", "t") >= col("lo", "t"),
                                                          exp.Between(this=col("d", "e"), low=col("lo", "t"),
                                                                      high=col("hi", "t"))), join_type="inner"))
    hits = [(during(known, "known_during"), "k"), (during(possible, "possible_during"), "q")]
    if node["unknown_when"] is not None:
        # An episode ended for a reason that implies activity on it, after at least the offset and in the window.
        ended = ctx.cte(node, "ended", exp.select(col(PID)).distinct().from_(table(tbl)).where(and_(
            *qualifying, *where_sql(node["unknown_when"]), not_null(end),
            exp.Between(this=end.copy(), low=days_before(node["window_days"]), high=D()),
            end.copy() >= exp.Add(this=start.copy(), expression=offset.copy()))))
        hits.append((ended, "x"))
    q = exp.select(col(PID, "p")).from_(table("patients", "p"))
    for name, alias in hits:
        q = q.join(table(name, alias), on=col(PID, alias).eq(col(PID, "p")), join_type="left")
    doubt = or_(*[not_null(col(PID, a)) for _, a in hits[1:]])
    status = case([(not_null(col(PID, "k")), status_lit(PASS)), (doubt, status_lit(UNKNOWN))], status_lit(FAIL))
    return ctx.cte(node, "", q.select(status.as_("status")))


@compiles("years_since_by_value")
def _years_since_by_value(node: Node, ctx: Ctx) -> str:
    value = latest_sql(node, ctx, "value_", node["value_table"], node["value_column"], node["lookback_days"],
                       node["tie"], where_sql(node["where"]))
    above, below = node["max_years_above"], node["max_years_at_or_below"]
    fallback = (_years(node["fallback"], "p") if node["fallback"]
                else exp.cast(exp.null(), exp.DataType.build("double")))
    years = ctx.cte(node, "years", left_join_patients(value, [
        _years(node["column"], "p").as_("primary_years"), fallback.as_("fallback_years"), col("v", "r").as_("v")]))
    y, yd, v = col("primary_years"), col("fallback_years"), col("v")
    limit = case([(v > lit(node["step"]), lit(float(above)))], lit(float(below)))
    lo, hi = lit(float(min(above, below))), lit(float(max(above, below)))
    status = case([
        (and_(not_null(y), not_null(v)), case([(y.copy() < limit, status_lit(PASS))], status_lit(FAIL))),
        # Without the value, only a duration below both limits passes and one above both fails.
        (not_null(y), case([(y.copy() < lo, status_lit(PASS)), (y.copy() >= hi, status_lit(FAIL))],
                           status_lit(UNKNOWN))),
        # The fallback date (diagnosis) follows the primary one: the duration is at least that long.
        (and_(not_null(yd), not_null(v)), case([(yd.copy() >= limit.copy(), status_lit(FAIL))], status_lit(UNKNOWN))),
        (not_null(yd), case([(yd.copy() >= hi.copy(), status_lit(FAIL))], status_lit(UNKNOWN)))],
        status_lit(UNKNOWN))
    return ctx.cte(node, "", exp.select(col(PID), status.as_("status"),
                                        exp.func("coalesce", y.copy(), yd.copy()).as_(node["as"]),
                                        v.copy().as_(node["value_as"])).from_(table(years)))
