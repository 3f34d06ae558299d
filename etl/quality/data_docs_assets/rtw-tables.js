/* The parts of bootstrap-table that GX's Data Docs use, written for the warehouse so that the pages load
   nothing from the internet (etl/quality/data_docs.py puts this file in the place of bootstrap-table's):
   a table drawn from its columns and rows (GX's index lists its suites and validations so), sorted by a
   column on a click, a search box, rows that open their page, and the classes bootstrap-table gives the
   tables GX writes as HTML. No pagination and no filter controls: every row shows. Needs jQuery. */
(function ($) {
  "use strict";
  var CLASSES = "table table-bordered table-hover";

  function named(value) {  // GX names its row functions ("rowAttributesLinks"), defined by the page
    return typeof value === "string" ? window[value] : value;
  }

  function asText(html) {
    return $("<div>").html(html === undefined || html === null ? "" : String(html)).text();
  }

  function withText(row) {  // a row and, by field, its cells' text in lower case: searched and sorted on
    var text = {};
    Object.keys(row).forEach(function (field) { text[field] = asText(row[field]).trim().toLowerCase(); });
    return {row: row, text: text};
  }

  function compare(a, b, field) {
    var x = a.row[field], y = b.row[field];
    if (typeof x === "number" && typeof y === "number") { return x - y; }
    return (a.text[field] || "").localeCompare(b.text[field] || "", undefined, {numeric: true});
  }

  function sortField(state) {  // a column sorts by its sortName (GX's hidden *_sort fields) when it has one
    var column = state.columns.filter(function (c) { return c.field === state.sortName; })[0];
    return column && column.sortName ? column.sortName : state.sortName;
  }

  function shownRows(state) {
    var query = state.query.trim().toLowerCase();
    var rows = state.rows.filter(function (entry) {
      return !query || state.columns.some(function (c) { return (entry.text[c.field] || "").indexOf(query) >= 0; });
    });
    if (state.sortName) {
      var field = sortField(state), sign = state.sortOrder === "desc" ? -1 : 1;
      rows.sort(function (a, b) { return sign * compare(a, b, field); });
    }
    return rows.map(function (entry) { return entry.row; });
  }

  function drawBody($table, state) {
    var rowStyle = named(state.options.rowStyle), rowAttributes = named(state.options.rowAttributes);
    var $body = $table.children("tbody").empty();
    shownRows(state).forEach(function (row, index) {
      var $row = $("<tr>");
      if (rowAttributes) { $row.attr(rowAttributes(row, index)); }
      if (rowStyle) { $row.css((rowStyle(row, index) || {}).css || {}); }
      state.columns.forEach(function (c) {
        $("<td>").css("text-align", c.align || "").html(row[c.field] === undefined ? "" : row[c.field]).appendTo($row);
      });
      $row.on("click", function (event) {  // a link in the row opens its own page
        if (!$(event.target).closest("a").length) { $table.trigger("click-row.bs.table", [row, $row]); }
      });
      $body.append($row);
    });
    $table.find("th[data-field]").each(function () {
      var field = $(this).attr("data-field");
      $(this).attr("aria-sort", field === state.sortName ? (state.sortOrder === "desc" ? "descending" : "ascending") : "none");
    });
  }

  function drawHead($table, state) {
    var $row = $("<tr>");
    state.columns.forEach(function (c) {
      var $cell = $("<th>").attr("data-field", c.field).text(c.title || "").css("text-align", c.align || "");
      if (String(c.sortable) === "true") {
        $cell.addClass("rtw-sortable").attr("tabindex", 0).on("click keydown", function (event) {
          if (event.type === "keydown" && event.key !== "Enter") { return; }
          state.sortOrder = state.sortName === c.field && state.sortOrder === "asc" ? "desc" : "asc";
          state.sortName = c.field;
          drawBody($table, state);
        });
      }
      $row.append($cell);
    });
    $table.empty().append($("<thead>").append($row), $("<tbody>"));
  }

  function addSearch($table, state) {
    var $box = $('<input type="search" class="form-control form-control-sm rtw-table-search" placeholder="Search">');
    $box.attr("aria-label", "Search the table").on("input", function () {
      state.query = $box.val();
      drawBody($table, state);
    });
    state.search = $box;
    var $toolbar = $(state.options.toolbar || []);
    if ($toolbar.length) { $toolbar.append($box); } else { $table.before($box); }
  }

  function start($table, options) {
    var state = {options: options, columns: options.columns || [], rows: (options.data || []).map(withText),
                 sortName: options.sortName, sortOrder: options.sortOrder || "asc", query: ""};
    $table.addClass(CLASSES).data("rtw-table", state);
    drawHead($table, state);
    if (String(options.search) === "true") { addSearch($table, state); }
    drawBody($table, state);
  }

  $.fn.bootstrapTable = function (options) {
    return this.each(function () {
      var $table = $(this), state = $table.data("rtw-table");
      if (typeof options !== "string") { start($table, options || {}); return; }
      if (options === "resetSearch" && state && state.search) {  // GX's "Clear Filters"
        state.search.val("");
        state.query = "";
        drawBody($table, state);
      }
    });
  };

  $(function () {  // the tables GX writes as HTML: bootstrap-table would restyle them on load
    $('table[data-toggle="table"]').addClass(CLASSES);
  });
}(window.jQuery));
