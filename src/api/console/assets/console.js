// The fleetledger console's own script: rows that open what they show, filters that
// apply themselves, and the live feed (Server-Sent Events, pausable, resumed without
// loss). It builds every element with textContent, never HTML from data, and runs under
// the console's Content-Security-Policy (no inline script, no eval).
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // A click anywhere on a row follows its first link (keyboard users use the link itself).
  function bindRows(root) {
    root.querySelectorAll("tr[data-href]").forEach(function (row) {
      if (row.dataset.bound) return;
      row.dataset.bound = "1";
      row.addEventListener("click", function (event) {
        if (event.defaultPrevented) return;
        if (event.target.closest("a, button, input, select, textarea, label, summary, details")) return;
        if (window.getSelection && String(window.getSelection()).length > 0) return;
        var link = row.querySelector("a[href]");
        if (link) link.click();
        else window.location.assign(row.dataset.href);
      });
    });
  }

  function bindAutosubmit(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      select.addEventListener("change", function () {
        if (select.form.requestSubmit) select.form.requestSubmit();
        else select.form.submit();
      });
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cell(label) {
    var td = el("td");
    td.dataset.label = label;
    for (var i = 1; i < arguments.length; i++) td.appendChild(arguments[i]);
    return td;
  }

  // A feed row from the JSON the stream sends (`EventRow`).
  function feedRow(e) {
    var tr = el("tr", "new");
    tr.dataset.href = e.href;
    var number = cell("#", document.createTextNode(String(e.position)));
    number.className = "num";
    var link = el("a", null, e.stream_type + "/" + e.stream_id);
    link.href = e.href;
    var actor = el("span", "actor", e.actor.name);
    actor.title = e.actor.principal + (e.actor.key_id ? " · key " + e.actor.key_id : "");
    var by = cell("By", actor);
    if (e.actor.key_id && e.actor.name !== e.actor.principal) {
      by.appendChild(document.createTextNode(" "));
      by.appendChild(el("span", "muted mono small key-id", "…" + e.actor.key_id.slice(-8)));
    }
    var time = el("time", null, e.at.text);
    time.dateTime = e.at.iso;
    tr.appendChild(number);
    tr.appendChild(cell("Resource", link, document.createTextNode(" "), el("span", "muted small", "v" + e.version)));
    tr.appendChild(cell("Change", document.createTextNode(e.summary), el("br"), el("span", "muted mono small", e.event_type)));
    tr.appendChild(by);
    tr.appendChild(cell("When", time));
    return tr;
  }

  var MAX_ROWS = 500;

  function liveFeed() {
    var table = document.getElementById("feed");
    if (!table || table.dataset.live) return;
    table.dataset.live = "1";
    var body = table.tBodies[0];
    var pause = document.getElementById("pause");
    var state = document.getElementById("feed-state");
    var relay = document.getElementById("relay");
    var empty = document.getElementById("feed-empty");
    var after = table.dataset.after;
    var source = null;

    function connect() {
      var url = table.dataset.stream + (table.dataset.stream.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(after);
      source = new EventSource(url);
      source.addEventListener("open", function () {
        state.textContent = "live";
      });
      source.addEventListener("ledger", function (message) {
        var e = JSON.parse(message.data);
        after = message.lastEventId || String(e.position);
        body.insertBefore(feedRow(e), body.firstChild);
        while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
        if (empty) empty.hidden = true;
        bindRows(body);
      });
      source.addEventListener("status", function (message) {
        var s = JSON.parse(message.data);
        relay.textContent = s.text;
        relay.className = "badge " + (s.ok ? "ok" : "warn");
      });
      source.addEventListener("error", function () {
        state.textContent = source.readyState === EventSource.CLOSED ? "disconnected; reload the page" : "reconnecting…";
      });
    }

    pause.disabled = false;
    pause.addEventListener("click", function () {
      var pausing = pause.getAttribute("aria-pressed") !== "true";
      pause.setAttribute("aria-pressed", pausing ? "true" : "false");
      pause.textContent = pausing ? "Resume" : "Pause";
      if (pausing) {
        // Closed, not ignored: on resume the stream starts after the last event shown,
        // so whatever was recorded meanwhile arrives then.
        source.close();
        state.textContent = "paused";
      } else {
        state.textContent = "catching up…";
        connect();
      }
    });
    window.addEventListener("pagehide", function () {
      if (source) source.close();
    });
    connect();
  }

  function init(root) {
    bindRows(root);
    bindAutosubmit(root);
    liveFeed();
  }

  document.addEventListener("DOMContentLoaded", function () {
    init(document);
  });
  // Content htmx swapped in (a filtered list, another version of a resource).
  document.addEventListener("htmx:load", function (event) {
    init(event.detail.elt);
  });
})();
