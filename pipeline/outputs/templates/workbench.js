/* The report's workbench: switch criteria off, move thresholds, see the funnel follow.
 *
 * Data: <script type="application/json" id="wb-data">, built by pipeline/outputs/workbench/ (read its
 * docstring for the codes). Nothing is fetched: the combinations are deflated and base64-coded
 * in the page, and inflated here. Every count is an exact sum over the combinations; the rules
 * for a node's status mirror pipeline/outputs/workbench/rules.py `leaf_status` and the three-valued all/any/not
 * of pipeline/criteria/to_polars.py.
 */
(function () {
  "use strict";

  var PASS = 0, FAIL = 1, UNKNOWN = 2, SCREENING = 3;
  var STATUSES = ["eligible", "possible", "ineligible"];

  // ------------------------------------------------------------ raw DEFLATE (RFC 1951), after zlib's puff.c

  var LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
  var LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
  var DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
    4097, 6145, 8193, 12289, 16385, 24577];
  var DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
  var ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

  function inflateRaw(buf, size) {
    var out = new Uint8Array(size), op = 0, ip = 0, bitbuf = 0, bitcnt = 0;

    function bits(need) {
      var val = bitbuf;
      while (bitcnt < need) {
        if (ip >= buf.length) throw new Error("the workbench data are truncated");
        val |= buf[ip++] << bitcnt;
        bitcnt += 8;
      }
      bitbuf = val >>> need;
      bitcnt -= need;
      return val & ((1 << need) - 1);
    }

    function huffman(lengths, n) {
      var count = new Uint16Array(16), offs = new Uint16Array(16), symbol = new Uint16Array(n), s, len;
      for (s = 0; s < n; s++) count[lengths[s]]++;
      count[0] = 0;
      for (len = 1; len < 15; len++) offs[len + 1] = offs[len] + count[len];
      for (s = 0; s < n; s++) if (lengths[s] !== 0) symbol[offs[lengths[s]]++] = s;
      return { count: count, symbol: symbol };
    }

    function decode(h) {
      var code = 0, first = 0, index = 0, len, count;
      for (len = 1; len <= 15; len++) {
        code |= bits(1);
        count = h.count[len];
        if (code - count < first) return h.symbol[index + (code - first)];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
      }
      throw new Error("the workbench data are damaged (bad code)");
    }

    function codes(lencode, distcode) {
      var sym, len, dist, i;
      for (;;) {
        sym = decode(lencode);
        if (sym < 256) {
          out[op++] = sym;
        } else if (sym === 256) {
          return;
        } else {
          sym -= 257;
          if (sym >= 29) throw new Error("the workbench data are damaged (length)");
          len = LBASE[sym] + bits(LEXT[sym]);
          sym = decode(distcode);
          if (sym >= 30) throw new Error("the workbench data are damaged (distance)");
          dist = DBASE[sym] + bits(DEXT[sym]);
          if (dist > op || op + len > size) throw new Error("the workbench data are damaged (copy)");
          for (i = 0; i < len; i++, op++) out[op] = out[op - dist];
        }
      }
    }

    var fixedLen = null, fixedDist = null;

    function fixed() {
      if (!fixedLen) {
        var l = new Uint8Array(288), i;
        for (i = 0; i < 144; i++) l[i] = 8;
        for (; i < 256; i++) l[i] = 9;
        for (; i < 280; i++) l[i] = 7;
        for (; i < 288; i++) l[i] = 8;
        fixedLen = huffman(l, 288);
        var d = new Uint8Array(30);
        for (i = 0; i < 30; i++) d[i] = 5;
        fixedDist = huffman(d, 30);
      }
      codes(fixedLen, fixedDist);
    }

    function dynamic() {
      var nlen = bits(5) + 257, ndist = bits(5) + 1, ncode = bits(4) + 4, i, sym, len, rep;
      var lengths = new Uint8Array(320);
      for (i = 0; i < ncode; i++) lengths[ORDER[i]] = bits(3);
      var lencode = huffman(lengths, 19);
      lengths = new Uint8Array(320);
      i = 0;
      while (i < nlen + ndist) {
        sym = decode(lencode);
        if (sym < 16) {
          lengths[i++] = sym;
        } else {
          len = 0;
          if (sym === 16) {
            if (i === 0) throw new Error("the workbench data are damaged (repeat)");
            len = lengths[i - 1];
            rep = 3 + bits(2);
          } else if (sym === 17) {
            rep = 3 + bits(3);
          } else {
            rep = 11 + bits(7);
          }
          if (i + rep > nlen + ndist) throw new Error("the workbench data are damaged (lengths)");
          while (rep--) lengths[i++] = len;
        }
      }
      codes(huffman(lengths, nlen), huffman(lengths.subarray(nlen), ndist));
    }

    function stored() {
      bitbuf = 0;
      bitcnt = 0;
      if (ip + 4 > buf.length) throw new Error("the workbench data are truncated");
      var len = buf[ip] | (buf[ip + 1] << 8);
      ip += 4;
      if (ip + len > buf.length || op + len > size) throw new Error("the workbench data are damaged (stored)");
      out.set(buf.subarray(ip, ip + len), op);
      ip += len;
      op += len;
    }

    var last, type;
    do {
      last = bits(1);
      type = bits(2);
      if (type === 0) stored();
      else if (type === 1) fixed();
      else if (type === 2) dynamic();
      else throw new Error("the workbench data are damaged (block type)");
    } while (!last);
    if (op !== size) throw new Error("the workbench data have the wrong size");
    return out;
  }

  // ------------------------------------------------------------ the combinations

  function unpack(p) {
    var bin = atob(p.data), buf = new Uint8Array(bin.length), i, c;
    for (i = 0; i < bin.length; i++) buf[i] = bin.charCodeAt(i);
    var raw = inflateRaw(buf, p.raw_bytes), rows = p.rows, pos = 0, cols = [];
    for (c = 0; c < p.widths.length; c++) {
      if (p.widths[c] === 1) {
        cols.push(raw.subarray(pos, pos + rows));
      } else {
        var a = new Uint16Array(rows);
        for (i = 0; i < rows; i++) a[i] = raw[pos + 2 * i] | (raw[pos + 2 * i + 1] << 8);
        cols.push(a);
      }
      pos += rows * p.widths[c];
    }
    var n = new Uint32Array(rows), v = 0, shift = 0, r = 0, total = 0;
    for (; pos < raw.length; pos++) {
      v += (raw[pos] & 0x7f) * Math.pow(2, shift);
      shift += 7;
      if (raw[pos] < 0x80) {
        n[r++] = v;
        total += v;
        v = 0;
        shift = 0;
      }
    }
    if (r !== rows || total !== p.population) throw new Error("the workbench data do not add up");
    return { cols: cols, n: n, rows: rows };
  }

  // ------------------------------------------------------------ rules (mirror of workbench/rules.py)

  function ge(c, i) { return i < (c >> 1) + (c & 1); }  // value >= grid[i]
  function le(c, i) { return i >= (c >> 1); }  // value <= grid[i]

  function leafStatus(kind, t, idx, otherwise) {
    var c, lo, hi, ok, below, limit, shortEnough;
    switch (kind) {
      case "latest_value": case "age": case "count":
        c = t[0];
        if (c < 0) return UNKNOWN;
        lo = kind === "count" ? idx.at_least : idx.min;
        hi = kind === "count" ? idx.at_most : idx.max;
        ok = (lo === null || ge(c, lo)) && (hi === null || le(c, hi));
        return ok ? PASS : (kind === "count" ? otherwise : FAIL);
      case "lab_uln":
        c = t[0];
        if (c < 0) return UNKNOWN;
        return le(c, idx.max_uln) ? PASS : FAIL;
      case "years_since":
        c = t[0];
        if (c < 0) return UNKNOWN;
        below = !ge(c, idx.max_years);
        if (!t[1]) return below ? PASS : FAIL;
        return below ? UNKNOWN : FAIL;
      case "creatinine_clearance":
        lo = idx.min_crcl;
        if (t[0] === 0) return UNKNOWN;
        if (t[0] === 1) return ge(t[1], lo) ? PASS : FAIL;
        if (!ge(t[1], lo)) return FAIL;
        return ge(t[2], lo) ? PASS : UNKNOWN;
      case "years_since_by_value":
        c = t[0];
        if (c < 0) return UNKNOWN;
        lo = Math.min(idx.max_years_above, idx.max_years_at_or_below);
        hi = Math.max(idx.max_years_above, idx.max_years_at_or_below);
        if (t[2] >= 0) {
          limit = le(t[2], idx.step) ? idx.max_years_at_or_below : idx.max_years_above;
          shortEnough = !ge(c, limit);
          if (!t[1]) return shortEnough ? PASS : FAIL;
          return shortEnough ? UNKNOWN : FAIL;
        }
        if (!t[1]) return !ge(c, lo) ? PASS : (ge(c, hi) ? FAIL : UNKNOWN);
        return ge(c, hi) ? FAIL : UNKNOWN;
    }
    throw new Error("unknown node type " + kind);
  }

  function combine(op, parts, rows) {
    var out = new Uint8Array(rows), r, k, s, sawFirst, sawUnknown;
    if (op === "not") {
      for (r = 0; r < rows; r++) {
        s = parts[0][r];
        out[r] = s === PASS ? FAIL : s === FAIL ? PASS : UNKNOWN;
      }
      return out;
    }
    var first = op === "all" ? FAIL : PASS, last = op === "all" ? PASS : FAIL;
    for (r = 0; r < rows; r++) {
      sawFirst = false;
      sawUnknown = false;
      for (k = 0; k < parts.length; k++) {
        s = parts[k][r];
        if (s === first) sawFirst = true;
        else if (s === UNKNOWN) sawUnknown = true;
      }
      out[r] = sawFirst ? first : sawUnknown ? UNKNOWN : last;
    }
    return out;
  }

  // ------------------------------------------------------------ small-cell suppression (mirror of disclosure.py)

  var VISIBLE = 0, PRIMARY = 1, COMPLEMENT = 2, POOL = 16;

  /* Hidden cells whose value follows from the relations and the visible cells: those that are
   * zero in every vector of the null space of the hidden cells' columns (exactly as
   * disclosure.determined, by row reduction instead of an SVD). */
  function determined(a, hidden) {
    var h = hidden.length, m = a.length, rows = [], i, j, k;
    if (!h) return [];
    for (i = 0; i < m; i++) {
      var row = new Float64Array(h);
      for (j = 0; j < h; j++) row[j] = a[i][hidden[j]];
      rows.push(row);
    }
    var pivotRow = new Int32Array(h).fill(-1), r = 0;
    for (j = 0; j < h && r < m; j++) {
      var best = r;
      for (i = r + 1; i < m; i++) if (Math.abs(rows[i][j]) > Math.abs(rows[best][j])) best = i;
      if (Math.abs(rows[best][j]) < 1e-9) continue;
      var tmp = rows[r]; rows[r] = rows[best]; rows[best] = tmp;
      var pv = rows[r][j];
      for (k = 0; k < h; k++) rows[r][k] /= pv;
      for (i = 0; i < m; i++) {
        if (i !== r && Math.abs(rows[i][j]) > 1e-12) {
          var f = rows[i][j];
          for (k = 0; k < h; k++) rows[i][k] -= f * rows[r][k];
        }
      }
      pivotRow[j] = r++;
    }
    var out = [];
    for (j = 0; j < h; j++) {
      if (pivotRow[j] < 0) continue;  // a free column: not determined
      var free = false;
      for (k = 0; k < h && !free; k++) {
        if (pivotRow[k] < 0 && Math.abs(rows[pivotRow[j]][k]) > 1e-9) free = true;
      }
      if (!free) out.push(hidden[j]);
    }
    return out;
  }

  /* Marks for cells under linear relations `a` (rows of coefficients): primary for 1 .. min-1,
   * then complementary until no hidden cell is determined. `fixed` (cell -> mark) are cells
   * decided elsewhere: kept as they are and never chosen. Same choice order as audit.linear_suppression. */
  function suppress(values, a, minCell, fixed) {
    var n = values.length, marks = new Array(n), j;
    for (j = 0; j < n; j++) {
      if (fixed && fixed[j] !== undefined) marks[j] = fixed[j];
      else marks[j] = values[j] >= 1 && values[j] < minCell ? PRIMARY : VISIBLE;
    }
    function hiddenWith(extra) {
      var out = [];
      for (var c = 0; c < n; c++) if (marks[c] !== VISIBLE || c === extra) out.push(c);
      return out;
    }
    for (;;) {
      var stuck = determined(a, hiddenWith(-1));
      if (!stuck.length) return marks;
      var touching = new Array(n).fill(false), i, s;
      for (i = 0; i < a.length; i++) {
        var related = false;
        for (s = 0; s < stuck.length && !related; s++) if (a[i][stuck[s]] !== 0) related = true;
        if (related) for (j = 0; j < n; j++) if (a[i][j] !== 0) touching[j] = true;
      }
      var pool = [];
      for (j = 0; j < n; j++) if (touching[j] && marks[j] === VISIBLE && !(fixed && fixed[j] !== undefined)) pool.push(j);
      if (!pool.length) {  // determined through hidden cells only: any visible cell may help
        for (j = 0; j < n; j++) if (marks[j] === VISIBLE && !(fixed && fixed[j] !== undefined)) pool.push(j);
      }
      if (!pool.length) return marks;
      pool.sort(function (x, y) {  // the POOL smallest (non-zero first) are weighed, as audit.linear_suppression
        return ((values[x] === 0) - (values[y] === 0)) || (values[x] - values[y]) || (x - y);
      });
      pool = pool.slice(0, POOL);
      var bestJ = -1, bestCost = null;
      for (i = 0; i < pool.length; i++) {
        j = pool[i];
        var cost = [determined(a, hiddenWith(j)).length, values[j] === 0 ? 1 : 0, values[j], j];
        if (bestCost === null || lexLess(cost, bestCost)) { bestCost = cost; bestJ = j; }
      }
      marks[bestJ] = COMPLEMENT;
    }
  }

  /* min c.x subject to A x = b, lo <= x <= hi (hi finite): an optimal vertex, or null when infeasible.
   * A dense two-phase simplex with Bland's rule (no cycling), on y = x - lo and slacks for the upper
   * bounds; the role of audit.linear_program (HiGHS) in Python. The tables are small (sites x 4). */
  function lp(c, A, b, lo, hi) {
    var n = c.length, m0 = A.length, i, j, k;
    var m = m0 + n, N = 2 * n + m;  // rows: equalities, then y + s = u; columns: y, s, artificials
    var T = [], rhs = new Float64Array(m), basis = new Int32Array(m);
    for (i = 0; i < m; i++) T.push(new Float64Array(N));
    for (i = 0; i < m0; i++) {
      var r = b[i];
      for (j = 0; j < n; j++) { T[i][j] = A[i][j]; r -= A[i][j] * lo[j]; }
      rhs[i] = r;
    }
    for (j = 0; j < n; j++) { T[m0 + j][j] = 1; T[m0 + j][n + j] = 1; rhs[m0 + j] = hi[j] - lo[j]; }
    for (i = 0; i < m; i++) {
      if (rhs[i] < 0) { for (k = 0; k < 2 * n; k++) T[i][k] = -T[i][k]; rhs[i] = -rhs[i]; }
      T[i][2 * n + i] = 1;
      basis[i] = 2 * n + i;
    }
    var TOL = 1e-9;
    function pivot(pr, pc) {
      var row = T[pr], pv = row[pc], kk, ii;
      for (kk = 0; kk < N; kk++) row[kk] /= pv;
      rhs[pr] /= pv;
      for (ii = 0; ii < m; ii++) {
        if (ii === pr) continue;
        var f = T[ii][pc];
        if (f !== 0) {
          var ri = T[ii];
          for (kk = 0; kk < N; kk++) if (row[kk] !== 0) ri[kk] -= f * row[kk];
          rhs[ii] -= f * rhs[pr];
        }
      }
      basis[pr] = pc;
    }
    function run(cost, allowed) {  // minimise cost over the current basis; false when unbounded
      for (var guard = 0; guard < 50000; guard++) {
        var enter = -1, jj, ii;
        for (jj = 0; jj < N && enter < 0; jj++) {
          if (!allowed(jj)) continue;
          var inBasis = false;
          for (ii = 0; ii < m; ii++) if (basis[ii] === jj) { inBasis = true; break; }
          if (inBasis) continue;
          var red = cost[jj];
          for (ii = 0; ii < m; ii++) if (cost[basis[ii]] !== 0) red -= cost[basis[ii]] * T[ii][jj];
          if (red < -TOL) enter = jj;
        }
        if (enter < 0) return true;
        var leave = -1, best = Infinity;
        for (ii = 0; ii < m; ii++) {
          if (T[ii][enter] > TOL) {
            var ratio = rhs[ii] / T[ii][enter];
            if (ratio < best - TOL || (Math.abs(ratio - best) <= TOL && basis[ii] < basis[leave])) {
              best = ratio; leave = ii;
            }
          }
        }
        if (leave < 0) return false;
        pivot(leave, enter);
      }
      throw new Error("the suppression's linear program did not finish");
    }
    var phase1 = new Float64Array(N);
    for (i = 0; i < m; i++) phase1[2 * n + i] = 1;
    run(phase1, function () { return true; });
    var infeas = 0;
    for (i = 0; i < m; i++) if (basis[i] >= 2 * n) infeas += rhs[i];
    if (infeas > 1e-7) return null;
    for (i = 0; i < m; i++) {  // drive artificials at zero out of the basis where a real column can enter
      if (basis[i] < 2 * n) continue;
      for (j = 0; j < 2 * n; j++) if (Math.abs(T[i][j]) > TOL) { pivot(i, j); break; }
    }
    var phase2 = new Float64Array(N);
    for (j = 0; j < n; j++) phase2[j] = c[j];
    if (!run(phase2, function (col) { return col < 2 * n; })) return null;
    var x = new Float64Array(n);
    for (j = 0; j < n; j++) x[j] = lo[j];
    for (i = 0; i < m; i++) if (basis[i] < n) x[basis[i]] += rhs[i];
    return Array.from(x);
  }

  function integral(x) {
    if (!x) return false;
    for (var i = 0; i < x.length; i++) if (Math.abs(x[i] - Math.round(x[i])) > 1e-7) return false;
    return true;
  }

  function upperBound(values, minCell) {
    var mx = 0;
    for (var i = 0; i < values.length; i++) if (values[i] > mx) mx = values[i];
    return 2 * mx + 2 * minCell + 10;
  }

  /* Hidden cells, their relations with the visible cells moved to the right (audit._system). */
  function system(values, marks, a) {
    var hidden = [], i, j;
    for (j = 0; j < values.length; j++) if (marks[j] !== VISIBLE) hidden.push(j);
    var A = [], b = [];
    for (i = 0; i < a.length; i++) {
      var row = hidden.map(function (h) { return a[i][h]; }), any = false;
      for (j = 0; j < row.length; j++) if (row[j] !== 0) any = true;
      if (!any) continue;
      var r = 0;
      for (j = 0; j < values.length; j++) if (marks[j] === VISIBLE) r -= a[i][j] * values[j];
      A.push(row);
      b.push(r);
    }
    return { hidden: hidden, A: A, b: b };
  }

  /* audit.structure_bounds: per `<N` cell, what the marks alone imply (every other cell free from 0). */
  function structureBounds(marks, a, minCell) {
    var n = marks.length, lo = [], hi = [], lows = {}, highs = {}, j, zero = a.map(function () { return 0; });
    for (j = 0; j < n; j++) { lo.push(marks[j] === PRIMARY ? 1 : 0); hi.push(marks[j] === PRIMARY ? minCell - 1 : 1e6); }
    a.forEach(function (row) {  // a part of a `<N` total that is not `<N` itself is 0
      var nz = [];
      for (var q = 0; q < n; q++) if (row[q] !== 0) nz.push(q);
      nz.forEach(function (t) {
        var others = nz.filter(function (x) { return x !== t; });
        if (marks[t] === PRIMARY && others.length &&
            others.every(function (x) { return Math.sign(row[x]) === -Math.sign(row[t]); })) {
          others.forEach(function (x) { if (marks[x] !== PRIMARY) hi[x] = 0; });
        }
      });
    });
    for (j = 0; j < n; j++) {
      if (marks[j] !== PRIMARY) continue;
      var c = new Array(n).fill(0);
      c[j] = 1;
      var xmin = lp(c, a, zero, lo, hi);
      c[j] = -1;
      var xmax = lp(c, a, zero, lo, hi);
      lows[j] = xmin ? Math.ceil(xmin[j] - 1e-7) : 1;
      highs[j] = xmax ? Math.floor(xmax[j] + 1e-7) : minCell - 1;
    }
    return { lows: lows, highs: highs };
  }

  /* audit.failing: hidden cells the sound check cannot clear (integral witnesses, each `*` on its side);
   * `first`: stop at the first. Every integral optimum is kept as a witness for the cells after it. */
  function failing(values, marks, a, minCell, first, bounds) {
    var sys = system(values, marks, a), hidden = sys.hidden, h = hidden.length, i, out = [];
    if (!h) return out;
    var big = upperBound(values, minCell), lo = [], hi = [], witnesses = [];
    hidden.forEach(function (j) {
      if (marks[j] === PRIMARY) { lo.push(1); hi.push(minCell - 1); }
      else if (values[j] === 0) { lo.push(0); hi.push(0); }
      else { lo.push(minCell); hi.push(big); }
    });
    var sb = bounds || structureBounds(marks, a, minCell);  // they depend on the `<N` cells only
    function solve(i, sign) {
      var c = new Array(h).fill(0);
      c[i] = sign;
      var x = lp(c, sys.A, sys.b, lo, hi);
      if (!integral(x)) return null;
      x = x.map(Math.round);
      witnesses.push(x);
      return x;
    }
    for (i = 0; i < h; i++) {
      var j = hidden[i], ok = true, x;
      if (marks[j] === COMPLEMENT && values[j] === 0) {
        var c = new Array(h).fill(0), l2 = lo.slice(), h2 = hi.slice();
        c[i] = 1;
        l2[i] = minCell; h2[i] = big;
        ok = integral(lp(c, sys.A, sys.b, l2, h2));
      } else if (marks[j] === PRIMARY) {
        var needLo = Math.max(1, sb.lows[j]), needHi = Math.min(minCell - 1, sb.highs[j]);
        var hasLo = witnesses.some(function (w) { return w[i] <= needLo; });
        if (!hasLo) { x = solve(i, 1); hasLo = x !== null && x[i] <= needLo; }
        var hasHi = hasLo && witnesses.some(function (w) { return w[i] >= needHi; });
        if (hasLo && !hasHi) { x = solve(i, -1); hasHi = x !== null && x[i] >= needHi; }
        ok = hasLo && hasHi;
      } else {
        var seen = {}, n = 0;
        witnesses.forEach(function (w) { if (!seen[w[i]]) { seen[w[i]] = true; n++; } });
        if (n < 2) {
          x = solve(i, 1);
          if (x === null) ok = false;
          else {
            if (!seen[x[i]]) { seen[x[i]] = true; n++; }
            if (n < 2) { x = solve(i, -1); ok = x !== null && !seen[x[i]]; }
          }
        }
      }
      if (!ok) {
        out.push(j);
        if (first) return out;
      }
    }
    return out;
  }

  /* audit.structural_zeros: zeros that are parts of a `<N` total stay shown. */
  function structuralZeros(values, a, minCell) {
    var out = {}, i, t, j;
    for (i = 0; i < a.length; i++) {
      var nz = [];
      for (j = 0; j < values.length; j++) if (a[i][j] !== 0) nz.push(j);
      for (t = 0; t < nz.length; t++) {
        var tt = nz[t];
        if (!(values[tt] >= 1 && values[tt] < minCell)) continue;
        var others = nz.filter(function (x) { return x !== tt; });
        if (others.length && others.every(function (x) { return Math.sign(a[i][x]) === -Math.sign(a[i][tt]); })) {
          others.forEach(function (x) { if (values[x] === 0) out[x] = true; });
        }
      }
    }
    return Object.keys(out).map(Number).sort(function (x, y) { return x - y; });
  }

  /* audit.protect: linear suppression, then further cells (smallest first) until the check passes. */
  function protect(values, a, minCell) {
    var n = values.length, fixed = {}, j;
    structuralZeros(values, a, minCell).forEach(function (z) { fixed[z] = VISIBLE; });
    var marks = suppress(values, a, minCell, fixed), bounds = structureBounds(marks, a, minCell);
    for (;;) {
      var bad = failing(values, marks, a, minCell, true, bounds);
      if (!bad.length) return marks;
      var touching = new Array(n).fill(false), pool = [], i;
      for (i = 0; i < a.length; i++) {
        var related = bad.some(function (x) { return a[i][x] !== 0; });
        if (related) for (j = 0; j < n; j++) if (a[i][j] !== 0) touching[j] = true;
      }
      for (j = 0; j < n; j++) if (touching[j] && marks[j] === VISIBLE && fixed[j] === undefined) pool.push(j);
      if (!pool.length) for (j = 0; j < n; j++) if (marks[j] === VISIBLE && fixed[j] === undefined) pool.push(j);
      if (!pool.length) {  // nothing left to hide (Python's release gate would stop): the page withholds the table
        marks.withheld = true;
        return marks;
      }
      pool.sort(function (x, y) {
        return ((values[x] === 0) - (values[y] === 0)) || (values[x] - values[y]) || (x - y);
      });
      marks[pool[0]] = COMPLEMENT;
    }
  }

  function lexLess(x, y) {
    for (var i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i];
    return false;
  }

  /* The site table as disclosure.relations lays it out: sites then totals, columns
   * population, eligible, possible, ineligible; flattened row by row. */
  function siteRelations(nSites) {
    var m = nSites + 1, k = 4, eqs = [], r, c, e;
    for (r = 0; r < m; r++) {
      e = new Array(m * k).fill(0);
      e[r * k] = 1;
      for (c = 1; c < k; c++) e[r * k + c] = -1;
      eqs.push(e);
    }
    for (c = 0; c < k; c++) {
      e = new Array(m * k).fill(0);
      for (r = 0; r < nSites; r++) e[r * k + c] = 1;
      e[nSites * k + c] = -1;
      eqs.push(e);
    }
    return eqs;
  }

  /* The attrition chain: cells [P, I, e1..ek, r1..r(k-1)], r0 = P and rk = P - I
   * (relations r(i-1) - e(i) - r(i) = 0); P and I are the site table's totals (fixed). */
  function chainRelations(k) {
    var n = 2 + k + Math.max(k - 1, 0), eqs = [], i;
    function rIdx(i) { return 2 + k + (i - 1); }
    for (i = 1; i <= k; i++) {
      var e = new Array(n).fill(0);
      if (i === 1) e[0] += 1; else e[rIdx(i - 1)] += 1;
      e[2 + (i - 1)] -= 1;
      if (i === k) { e[0] -= 1; e[1] += 1; } else e[rIdx(i)] -= 1;
      eqs.push(e);
    }
    return eqs;
  }

  // ------------------------------------------------------------ the workbench

  function fmt(v) { return Number(v).toLocaleString("en-US"); }

  function quote(arg) {
    if (/^[A-Za-z0-9_@%+=:,.\/-]+$/.test(arg)) return arg;
    return "'" + arg.replace(/'/g, "'\\''") + "'";
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  /* A cell with a criterion id that may wrap after its underscores only (no_second_tumor). */
  function breakable(id) {
    var td = el("td"), parts = id.split("_");
    parts.forEach(function (part, i) {
      td.appendChild(document.createTextNode(part + (i < parts.length - 1 ? "_" : "")));
      if (i < parts.length - 1) td.appendChild(document.createElement("wbr"));
    });
    return td;
  }

  function Workbench(p, root) {
    this.p = p;
    this.root = root;
    p.sliders.forEach(function (s) {  // each label parses to its grid point, as --set parses it
      s.values = s.labels.map(function (l) { return l === "none" ? null : Number(l); });
    });
    this.data = unpack(p);
    this.enabled = p.criteria.map(function () { return true; });
    this.pos = p.sliders.map(function (s) { return s.initial; });
    this.cache = p.criteria.map(function () { return null; });
    this.colCache = {};
    this.run = null;
  }

  Workbench.prototype.columnStatus = function (col, table) {
    var keys = this.data.cols[col], rows = this.data.rows, out = new Uint8Array(rows);
    for (var r = 0; r < rows; r++) out[r] = table[keys[r]];
    return out;
  };

  Workbench.prototype.boundIndex = function (b) {
    if (b.slider === undefined) return b.fixed;
    var pos = this.pos[b.slider];
    if (b.idx) return b.idx[pos];
    return this.p.sliders[b.slider].values[pos] === null ? null : pos - b.offset;
  };

  Workbench.prototype.tree = function (t) {
    var self = this, i;
    if (t.op === "col") {
      if (!this.colCache[t.col]) this.colCache[t.col] = this.columnStatus(t.col, this.p.columns[t.col].dict);
      return this.colCache[t.col];
    }
    if (t.op === "leaf") {
      var idx = {};
      for (var f in t.bounds) if (Object.prototype.hasOwnProperty.call(t.bounds, f)) idx[f] = this.boundIndex(t.bounds[f]);
      var dict = this.p.columns[t.col].dict, table = new Uint8Array(dict.length);
      var otherwise = t.otherwise === undefined ? FAIL : t.otherwise;
      for (i = 0; i < dict.length; i++) table[i] = leafStatus(t.kind, dict[i], idx, otherwise);
      return this.columnStatus(t.col, table);
    }
    return combine(t.op, t.of.map(function (c) { return self.tree(c); }), this.data.rows);
  };

  Workbench.prototype.status = function (ci) {
    if (!this.cache[ci]) this.cache[ci] = this.tree(this.p.criteria[ci].tree);
    return this.cache[ci];
  };

  /* Everything the page shows, from the combinations: as outputs.counts, by_site and attrition.
   * Criterion by criterion over contiguous arrays (a pass per criterion, then one over the rows). */
  Workbench.prototype.compute = function () {
    var p = this.p, on = [], ci, k, r, s, w;
    for (ci = 0; ci < p.criteria.length; ci++) if (this.enabled[ci]) on.push(ci);
    var K = on.length, rows = this.data.rows, n = this.data.n;
    var site = this.data.cols[p.site_col], nSites = p.sites.length;
    var per = new Float64Array(K * 4), excluded = new Float64Array(K), gain = new Float64Array(K);
    var firstFail = new Int16Array(rows).fill(-1), lastFail = new Int16Array(rows), nFail = new Uint16Array(rows);
    var unknown = new Uint8Array(rows);
    for (k = 0; k < K; k++) {
      var S = this.status(on[k]), c0 = 0, c1 = 0, c2 = 0, c3 = 0;
      for (r = 0; r < rows; r++) {
        s = S[r];
        w = n[r];
        if (s === PASS) {
          c0 += w;
        } else if (s === FAIL) {
          c1 += w;
          nFail[r]++;
          lastFail[r] = k;
          if (firstFail[r] < 0) firstFail[r] = k;
        } else if (s === UNKNOWN) {
          c2 += w;
          unknown[r] = 1;
        } else {
          c3 += w;
        }
      }
      per[k * 4] = c0;
      per[k * 4 + 1] = c1;
      per[k * 4 + 2] = c2;
      per[k * 4 + 3] = c3;
    }
    var bySite = new Float64Array(nSites * 3), totals = [0, 0, 0], st;
    for (r = 0; r < rows; r++) {
      w = n[r];
      if (firstFail[r] >= 0) {
        excluded[firstFail[r]] += w;
        if (nFail[r] === 1) gain[lastFail[r]] += w;
        st = 2;
      } else {
        st = unknown[r] ? 1 : 0;
      }
      bySite[site[r] * 3 + st] += w;
      totals[st] += w;
    }
    var attrition = [], remaining = p.population;
    for (k = 0; k < K; k++) {
      remaining -= excluded[k];
      attrition.push({
        step: k + 1, criterion: p.criteria[on[k]].id,
        n_pass: per[k * 4], n_fail: per[k * 4 + 1], n_unknown: per[k * 4 + 2], n_screening: per[k * 4 + 3],
        remaining: remaining, excluded: excluded[k], gain: gain[k]
      });
    }
    var sites = {};
    for (var i = 0; i < nSites; i++) {
      sites[p.sites[i]] = { eligible: bySite[i * 3], possible: bySite[i * 3 + 1], ineligible: bySite[i * 3 + 2] };
    }
    return {
      population: p.population, eligible: totals[0], possible: totals[1], ineligible: totals[2],
      by_site: sites, attrition: attrition, perCriterion: on.map(function (c, j) {
        return { criterion: p.criteria[c].id, pass: per[j * 4], fail: per[j * 4 + 1], unknown: per[j * 4 + 2] };
      })
    };
  };

  /* What a shareable page may show: text per cell of the site table (with totals), protected as
   * site_counts.csv is (audit.protect: the same marks for the same counts). The attrition of a
   * shareable page shows no counts (see the README: shareable workbench). */
  Workbench.prototype.disclose = function (res) {
    var p = this.p, min = p.min_cell, nSites = p.sites.length, values = [], i;
    for (i = 0; i < nSites; i++) {
      var v = res.by_site[p.sites[i]];
      values.push(v.eligible + v.possible + v.ineligible, v.eligible, v.possible, v.ineligible);
    }
    values.push(res.population, res.eligible, res.possible, res.ineligible);
    var siteMarks = protect(values, siteRelations(nSites), min);
    function show(v, m) {
      if (siteMarks.withheld) return "–";
      return m === VISIBLE ? fmt(v) : m === PRIMARY ? "<" + min : "*";
    }
    var out = { site: [], siteMarks: siteMarks };
    for (i = 0; i < values.length; i++) out.site.push(show(values[i], siteMarks[i]));
    return out;
  };

  // ------------------------------------------------------------ the page

  Workbench.prototype.sliderText = function (s, i) {
    var v = s.labels[i];
    if (s.values[i] === null) return s.edge === "min" ? "no lower limit" : "no upper limit";
    return v + (s.unit ? " " + s.unit : "");
  };

  Workbench.prototype.build = function () {
    var self = this, p = this.p, root = this.root;
    root.textContent = "";
    root.classList.add("wb-ready");

    var head = el("div", { "class": "wb-funnel", id: "wb-funnel" });
    [["population", "patients"], ["eligible", "eligible"], ["possible", "possible"], ["ineligible", "ineligible"]]
      .forEach(function (x) {
        var card = el("div", { "class": "wb-card " + x[0] });
        card.appendChild(el("div", { "class": "v", "data-wb": x[0] }, ""));
        var l = el("div", { "class": "l" }, x[1] + " ");
        l.appendChild(el("span", { "class": "wb-delta", "data-wb-delta": x[0] }, ""));
        card.appendChild(l);
        head.appendChild(card);
      });
    root.appendChild(head);
    this.live = el("p", { "class": "wb-sr", role: "status", "aria-live": "polite", id: "wb-live" }, "");
    root.appendChild(this.live);

    var grid = el("div", { "class": "wb-grid" });
    var controls = el("fieldset", { "class": "wb-controls", id: "wb-controls" });
    controls.appendChild(el("legend", null, "Criteria (untick to leave one out) and their thresholds"));
    this.boxes = [];
    this.ranges = [];
    this.outputs = [];
    this.stats = [];
    p.criteria.forEach(function (c, ci) {
      var row = el("div", { "class": "wb-crit", "data-wb-crit": c.id });
      var box = el("input", { type: "checkbox", id: "wb-on-" + c.id, checked: "" });
      box.checked = true;
      var label = el("label", { "for": "wb-on-" + c.id });
      label.appendChild(el("b", null, c.id));
      label.appendChild(document.createTextNode(" "));
      if (c.text.indexOf("(" + c.kind + ")") !== 0) label.appendChild(el("span", { "class": "muted" }, "(" + c.kind + ") "));
      label.appendChild(el("span", { "class": "wb-text" }, c.text));
      row.appendChild(box);
      row.appendChild(label);
      var stat = el("div", { "class": "wb-stat muted", "data-wb-stat": c.id }, "");
      row.appendChild(stat);
      self.stats.push(stat);
      box.addEventListener("change", function () { self.enabled[ci] = box.checked; self.toggled(ci); });
      self.boxes.push(box);
      c.sliders.forEach(function (si) {
        var s = p.sliders[si], id = "wb-s-" + si;
        var wrap = el("div", { "class": "wb-slider", "data-slider": s.id });
        var lab = el("label", { "for": id });
        lab.appendChild(el("code", null, s.param));
        lab.appendChild(document.createTextNode(": " + s.what + ", " + s.phrase));
        var input = el("input", {
          type: "range", id: id, min: "0", max: String(s.labels.length - 1), step: "1", value: String(self.pos[si]),
          "data-slider": s.id, "aria-describedby": id + "-run"
        });
        input.value = String(self.pos[si]);
        var out = el("output", { "for": id, "class": "wb-value", id: id + "-out" }, "");
        var run = el("span", { "class": "muted", id: id + "-run" },
          "run: " + self.sliderText(s, s.initial) + (s.overridden ? " (changed with --set)" : ""));
        input.addEventListener("input", function () { self.moved(si, +input.value); });
        wrap.appendChild(lab);
        wrap.appendChild(input);
        wrap.appendChild(out);
        wrap.appendChild(run);
        row.appendChild(wrap);
        self.ranges[si] = input;
        self.outputs[si] = out;
      });
      if (c.note) row.appendChild(el("p", { "class": "muted wb-note" }, "Not slidable: " + c.note));
      controls.appendChild(row);
    });
    var reset = el("button", { type: "button", id: "wb-reset" }, "Back to this run's settings");
    reset.addEventListener("click", function () { self.reset(); });
    controls.appendChild(reset);
    grid.appendChild(controls);

    var results = el("div", { "class": "wb-results" });
    results.appendChild(el("h3", null, p.shareable ? "Criteria in the order they are applied" : "Attrition with these settings"));
    if (p.shareable) {
      results.appendChild(el("p", { "class": "muted", id: "wb-attrition-note" },
        "A shareable report shows no counts per step: each step's exclusions, beside the totals, " +
        "would narrow the small counts of the sites table (see the README)."));
    }
    var at = el("table", { id: "wb-attrition" });
    var cols = p.shareable ? ["#", "criterion"]
      : ["#", "criterion", "pass", "fail", "unknown", "screening", "remaining", "excluded", "gain"];
    var tr = el("tr");
    cols.forEach(function (h, i) { tr.appendChild(el("th", i > 1 ? { "class": "num", scope: "col" } : { scope: "col" }, h)); });
    at.appendChild(el("thead")).appendChild(tr);
    this.attrBody = at.appendChild(el("tbody"));
    results.appendChild(el("div", { "class": "wb-scroll" })).appendChild(at);

    results.appendChild(el("h3", null, "Sites with these settings"));
    var st = el("table", { id: "wb-sites" });
    tr = el("tr");
    ["site", "patients", "eligible", "possible", "ineligible"].forEach(function (h, i) {
      tr.appendChild(el("th", i ? { "class": "num", scope: "col" } : { scope: "col" }, h));
    });
    st.appendChild(el("thead")).appendChild(tr);
    this.siteBody = st.appendChild(el("tbody"));
    results.appendChild(el("div", { "class": "wb-scroll" })).appendChild(st);
    grid.appendChild(results);
    root.appendChild(grid);

    var cmd = el("div", { "class": "wb-command" });
    cmd.appendChild(el("h3", { id: "wb-command-title" }, "The run that gives these counts"));
    this.cmd = el("pre", { id: "wb-command", "aria-labelledby": "wb-command-title", tabindex: "0" }, "");
    cmd.appendChild(this.cmd);
    var copy = el("button", { type: "button", id: "wb-copy" }, "Copy as command");
    this.copied = el("span", { role: "status", id: "wb-copied", "class": "muted" }, "");
    copy.addEventListener("click", function () { self.copy(); });
    cmd.appendChild(copy);
    cmd.appendChild(document.createTextNode(" "));
    cmd.appendChild(this.copied);
    this.dropNote = el("p", { "class": "muted", id: "wb-dropped" }, "");
    cmd.appendChild(this.dropNote);
    this.trialLink = el("a", { id: "wb-trial-file" }, "");
    this.trialLink.hidden = true;
    cmd.appendChild(el("p")).appendChild(this.trialLink);
    root.appendChild(cmd);

    this.run = this.compute();
    p.sliders.forEach(function (s, si) { self.showSlider(si); });
    this.render(this.run);
  };

  Workbench.prototype.showSlider = function (si) {
    var s = this.p.sliders[si], text = this.sliderText(s, this.pos[si]);
    this.outputs[si].textContent = text;
    this.ranges[si].setAttribute("aria-valuetext", s.what + " " + (s.values[this.pos[si]] === null ? "" : s.phrase + " ") + text);
    this.ranges[si].value = String(this.pos[si]);
    this.ranges[si].classList.toggle("wb-changed", this.pos[si] !== s.initial);
  };

  /* A minimum above a maximum, or neither where one is required, is refused by msfeas (exit 2): the
   * moved slider stops short of it. */
  Workbench.prototype.clamp = function (si, want) {
    var p = this.p, s = p.sliders[si], self = this;
    var value = function (bound, pos) { return bound.slider !== undefined ? p.sliders[bound.slider].values[pos[bound.slider]] : bound.value; };
    var ok = function (pos) {
      var fine = true;
      p.criteria.forEach(function (c) {
        (function walk(t) {
          if (t.of) { t.of.forEach(walk); return; }
          if (t.op !== "leaf" || !t.ordered) return;
          var lo = value(t.bounds[t.ordered[0]], pos), hi = value(t.bounds[t.ordered[1]], pos);
          var noLo = lo === null || lo === undefined, noHi = hi === null || hi === undefined;
          if (!noLo && !noHi && lo > hi) fine = false;
          if (t.required && noLo && noHi) fine = false;
        })(c.tree);
      });
      return fine;
    };
    var pos = this.pos.slice();
    pos[si] = want;
    if (ok(pos)) return want;
    var step = want > this.pos[si] ? -1 : 1;
    for (var i = want; i !== this.pos[si]; i += step) {
      pos[si] = i;
      if (ok(pos)) return i;
    }
    return this.pos[si];
  };

  Workbench.prototype.moved = function (si, want) {
    var got = this.clamp(si, want), self = this;
    this.pos[si] = got;
    this.showSlider(si);
    this.p.criteria.forEach(function (c, ci) { if (c.sliders.indexOf(si) >= 0) self.cache[ci] = null; });
    this.update();
  };

  Workbench.prototype.toggled = function (ci) {
    var c = this.p.criteria[ci], self = this;
    c.sliders.forEach(function (si) { self.ranges[si].disabled = !self.enabled[ci]; });
    this.root.querySelector('[data-wb-crit="' + c.id + '"]').classList.toggle("wb-off", !this.enabled[ci]);
    this.update();
  };

  Workbench.prototype.reset = function () {
    var self = this;
    this.p.criteria.forEach(function (c, ci) {
      self.enabled[ci] = true;
      self.boxes[ci].checked = true;
      self.cache[ci] = null;
      c.sliders.forEach(function (si) { self.ranges[si].disabled = false; });
      self.root.querySelector('[data-wb-crit="' + c.id + '"]').classList.remove("wb-off");
    });
    this.p.sliders.forEach(function (s, si) { self.pos[si] = s.initial; self.showSlider(si); });
    this.update();
  };

  Workbench.prototype.update = function () {
    var res = this.compute();
    this.render(res);
    this.saveState();
    var self = this;
    clearTimeout(this.announce);
    this.announce = setTimeout(function () {
      self.live.textContent = "With these settings: " + self.funnelText(res);
    }, 400);
  };

  Workbench.prototype.funnelText = function (res) {
    var d = this.shown;
    return "eligible " + d.eligible + ", possible " + d.possible + ", ineligible " + d.ineligible + ".";
  };

  Workbench.prototype.render = function (res) {
    var p = this.p, self = this, run = this.run, i;
    var nSites = p.sites.length, shown = {};
    var cut = p.shareable ? this.disclose(res) : null;
    ["population", "eligible", "possible", "ineligible"].forEach(function (k, j) {
      shown[k] = cut ? cut.site[nSites * 4 + j] : fmt(res[k]);
      self.root.querySelector('[data-wb="' + k + '"]').textContent = shown[k];
      var delta = res[k] - run[k], dEl = self.root.querySelector('[data-wb-delta="' + k + '"]');
      dEl.textContent = !cut && delta ? "(" + (delta > 0 ? "+" : "−") + fmt(Math.abs(delta)) + " vs this run)" : "";
    });
    this.shown = shown;

    var body = this.attrBody;
    body.textContent = "";
    res.attrition.forEach(function (a, k) {
      var tr = el("tr", { "data-criterion": a.criterion });
      tr.appendChild(el("td", { "class": "num" }, String(a.step)));
      tr.appendChild(breakable(a.criterion));
      var cells = cut ? []
        : [["n_pass", a.n_pass], ["n_fail", a.n_fail], ["n_unknown", a.n_unknown], ["n_screening", a.n_screening],
          ["remaining", a.remaining], ["excluded", a.excluded], ["gain", a.gain]];
      cells.forEach(function (c) {
        tr.appendChild(el("td", { "class": "num", "data-k": c[0] }, cut ? c[1] : fmt(c[1])));
      });
      body.appendChild(tr);
    });
    if (!res.attrition.length) {
      var none = body.appendChild(el("tr"));
      none.appendChild(el("td", { colspan: "9" }, "Every criterion is switched off: every patient counts as eligible."));
    }

    body = this.siteBody;
    body.textContent = "";
    for (i = 0; i <= nSites; i++) {
      var name = i < nSites ? p.sites[i] : "all sites";
      var v = i < nSites ? res.by_site[name] : res;
      var vals = [v.eligible + v.possible + v.ineligible, v.eligible, v.possible, v.ineligible];
      var tr = el("tr", i < nSites ? { "data-site": name } : { "data-site": "", "class": "wb-total" });
      tr.appendChild(el(i < nSites ? "td" : "th", i < nSites ? null : { scope: "row" }, name));
      ["population", "eligible", "possible", "ineligible"].forEach(function (k, j) {
        tr.appendChild(el("td", { "class": "num", "data-k": k }, cut ? cut.site[i * 4 + j] : fmt(vals[j])));
      });
      body.appendChild(tr);
    }

    var byId = {};
    res.perCriterion.forEach(function (x) { byId[x.criterion] = x; });
    p.criteria.forEach(function (c, ci) {
      var x = byId[c.id];
      self.stats[ci].textContent = !x ? "left out" : cut ? "" :
        fmt(x.fail) + " fail · " + fmt(x.unknown) + " unknown · " + fmt(x.pass) + " pass";
    });
    this.renderCommand();
  };

  /* The file name of the trial file without the criteria left out (offered by the page, named in the command). */
  Workbench.prototype.trialFileName = function (dropped) {
    return this.p.trial + "-without-" + dropped.join("-") + ".toml";
  };

  Workbench.prototype.trialFileText = function () {
    var tf = this.p.trial_file, self = this, parts = [tf.header];
    this.p.criteria.forEach(function (c, ci) { if (self.enabled[ci]) parts.push(tf.blocks[ci]); });
    return parts.join("");
  };

  /* The run of the page's state: --set for every slider moved or overridden and for the parameters the run
   * changed, except those of criteria left out; a criterion left out is left out of the trial file the page
   * offers (the command's --trial names it). msfeas applies the --set values together, in any order. */
  Workbench.prototype.command = function () {
    var p = this.p, args = p.command.args.slice(), self = this, dropped = [], droppedSlider = {};
    p.criteria.forEach(function (c, ci) {
      if (!self.enabled[ci]) {
        dropped.push(c.id);
        c.sliders.forEach(function (si) { droppedSlider[si] = true; });
      }
    });
    p.sliders.forEach(function (s, si) {
      if (droppedSlider[si]) return;
      if (self.pos[si] !== s.initial || s.overridden) args.push("--set", s.id + "=" + s.labels[self.pos[si]]);
    });
    p.command.kept.forEach(function (k) {
      if (dropped.indexOf(k.id.split(".")[0]) < 0) args.push("--set", k.id + "=" + k.label);
    });
    var file = null, at = args.indexOf("--trial");
    if (dropped.length && p.trial_file && at >= 0) {
      file = this.trialFileName(dropped);
      args[at + 1] = file;
    }
    var text = args.map(quote).join(" ");
    if (dropped.length && file) {
      text += "\n# " + file + " is the trial file without " + dropped.join(", ") +
        ": download it from this page (\"Download the trial file\") into the folder you run this command in.";
    } else if (dropped.length) {
      text += "\n# not expressible with --set: this page left out " + dropped.join(", ") +
        ". A run judges every criterion of its trial file: to leave these out, remove them from a copy of the" +
        " trial file and give that file to --trial.";
    }
    return { text: text, dropped: dropped, file: file };
  };

  Workbench.prototype.renderCommand = function () {
    var c = this.command();
    this.cmd.textContent = c.text;
    this.dropNote.textContent = c.dropped.length ? (c.file ?
      "Switched off: " + c.dropped.join(", ") + ". The command runs the trial file without them: download it below." :
      "Switched off: " + c.dropped.join(", ") + ". A criterion cannot be dropped with --set, so the command " +
      "reproduces the thresholds only; the comment line says how to leave the criteria out.") : "";
    if (c.file) {  // a data: address: the page stays self-contained, nothing is fetched
      this.trialLink.setAttribute("href", "data:application/toml;charset=utf-8," + encodeURIComponent(this.trialFileText()));
      this.trialLink.setAttribute("download", c.file);
      this.trialLink.textContent = "Download the trial file without " + c.dropped.join(", ") + " (" + c.file + ")";
      this.trialLink.hidden = false;
    } else {
      this.trialLink.hidden = true;
      this.trialLink.removeAttribute("href");
    }
    this.copied.textContent = "";
  };

  /* The page's state in the URL fragment (#wb;off=a,b;set=crit.param:label,...): a reload or a shared
   * link restores it. Only what differs from the run's own settings is written. */
  Workbench.prototype.stateText = function () {
    var p = this.p, self = this, off = [], set = [], parts = [];
    p.criteria.forEach(function (c, ci) { if (!self.enabled[ci]) off.push(encodeURIComponent(c.id)); });
    p.sliders.forEach(function (s, si) {
      if (self.pos[si] !== s.initial) set.push(encodeURIComponent(s.id + ":" + s.labels[self.pos[si]]));
    });
    if (off.length) parts.push("off=" + off.join(","));
    if (set.length) parts.push("set=" + set.join(","));
    return parts.length ? "wb;" + parts.join(";") : "";
  };

  Workbench.prototype.saveState = function () {
    var text = this.stateText();
    if (("#" + text) === location.hash || (!text && !location.hash)) return;
    try {
      history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
    } catch (e) { /* a page where the history cannot be written keeps working without it */ }
  };

  Workbench.prototype.restore = function (hash) {
    var p = this.p, self = this, off = {}, want = {};
    (hash || "").replace(/^#/, "").split(";").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq < 0) return;
      var key = part.slice(0, eq), items = part.slice(eq + 1).split(",").filter(Boolean).map(function (x) {
        try { return decodeURIComponent(x); } catch (e) { return ""; }
      });
      if (key === "off") items.forEach(function (id) { off[id] = true; });
      if (key === "set") {
        items.forEach(function (x) {
          var c = x.indexOf(":");
          if (c > 0) want[x.slice(0, c)] = x.slice(c + 1);
        });
      }
    });
    p.criteria.forEach(function (c, ci) {
      self.enabled[ci] = !off[c.id];
      self.boxes[ci].checked = self.enabled[ci];
      self.cache[ci] = null;
      c.sliders.forEach(function (si) { self.ranges[si].disabled = !self.enabled[ci]; });
      self.root.querySelector('[data-wb-crit="' + c.id + '"]').classList.toggle("wb-off", !self.enabled[ci]);
    });
    p.sliders.forEach(function (s, si) {  // all positions first, then each checked against the others
      var at = want[s.id] !== undefined ? s.labels.indexOf(want[s.id]) : -1;
      self.pos[si] = at >= 0 ? at : s.initial;
    });
    p.sliders.forEach(function (s, si) { self.pos[si] = self.clamp(si, self.pos[si]); self.showSlider(si); });
    this.update();
  };

  Workbench.prototype.copy = function () {
    var text = this.command().text, self = this;
    function done(ok) {
      self.copied.textContent = ok ? "Copied to the clipboard." : "Copying is blocked here: select the command above and copy it.";
    }
    function fallback() {
      var area = el("textarea", { "aria-hidden": "true", "class": "wb-sr" });
      area.value = text;
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      self.cmd.focus();
      done(ok);
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  };

  function start() {
    var root = document.getElementById("wb-app"), node = document.getElementById("wb-data");
    if (!root || !node) return;
    try {
      var p = JSON.parse(node.textContent);
      var wb = new Workbench(p, root);
      wb.build();
      if (location.hash.indexOf("#wb;") === 0) wb.restore(location.hash);
      window.addEventListener("hashchange", function () {
        if (location.hash.indexOf("#wb;") === 0 || !location.hash) wb.restore(location.hash);
      });
      window.msfeasWorkbench = wb;
    } catch (e) {
      root.textContent = "The workbench could not start in this browser: " + e.message;
      window.msfeasWorkbenchError = String(e && e.message || e);
    }
  }

  window.msfeasWorkbenchApi = { inflateRaw: inflateRaw, suppress: suppress, siteRelations: siteRelations,
    protect: protect, failing: failing, lp: lp, structuralZeros: structuralZeros,
    chainRelations: chainRelations, leafStatus: leafStatus };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
