// Sortable tables without dependencies: a button per header sorts by each cell's data-sort
// (numbers numerically, else text); n/a cells (empty data-sort) always sort last.
(function () {
  function key(td) {
    var s = td && td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : (td ? td.textContent : "");
    if (s === "") return null;
    var n = Number(s);
    return isNaN(n) ? s.toLowerCase() : n;
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var b = document.createElement("button");
      b.className = "sort"; b.type = "button"; b.title = "sort by this column"; b.textContent = "\u21C5";
      b.addEventListener("click", function () { sortBy(table, col, th); });
      th.appendChild(b);
    });
  });
})();
