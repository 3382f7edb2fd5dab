"""The report as a workbench: the data behind report.html's criterion toggles and threshold sliders.

The page recomputes the funnel (eligible, possible, ineligible), the attrition table and the
per-site counts when a criterion is switched off or a threshold is moved. It holds no
patient rows: only what those counts need, grouped into distinct combinations with a count.

**What is embedded.** For each patient: the site, and per criterion either its status code
(a criterion that cannot be slid) or, for a criterion whose rule compares per-patient values
with a threshold, the *codes* of those values. A combination of site and codes that several
patients share is stored once with their number. No id, name, date of birth or date is held.

**Exactness by construction.** A slider offers a fixed list of positions (a grid at the
value's clinical resolution: EDSS 0.5, age 1 year, years 0.1, ratios to the ULN 0.01, ...,
plus the run's own value and the trial file's). A value v is stored as its place among the
grid points G of its node: code = 2 * #(G < v) + (1 if v is a grid point), computed here with
the same float comparison the engines make (the --set value is parsed with `float()`, as
`load.coerce` does, and SQL reads it through its shortest repr, as `to_sql.lit` writes it).
Every comparison the node makes with a grid point i then follows from the code alone:
v >= G[i] iff i < s + e, v <= G[i] iff i >= s (s = code // 2, e = code % 2). So every slider
position maps to the decision a run with that `--set` makes, not to an approximation. Values
outside the grid fall into its two ends, where every position decides them alike.

**Checked at build.** Each slidable criterion is recomputed here from the codes at the run's
own settings (`leaf_status`, the same rules as `workbench.js`) and compared with the run's
status of every patient; a criterion that does not reproduce exactly is embedded as a plain
status column (it can be toggled, not slid) and the page says so. The tests compare the
page's counts with real runs at other positions, on both engines.

**Size.** Columns are dictionary-coded (one or two bytes per value), the rows sorted, the
counts written as LEB128 varints, the whole deflated (raw DEFLATE, inflated by the page's
own script: nothing is fetched) and base64-encoded.
"""

from pipeline.outputs.workbench.encoding import decode
from pipeline.outputs.workbench.model import Part
from pipeline.outputs.workbench.page import build, embed, script
from pipeline.outputs.workbench.recount import chain_relations, recount, shareable_view, suppress_cells

__all__ = ["Part", "build", "chain_relations", "decode", "embed", "recount", "script", "shareable_view",
           "suppress_cells"]
