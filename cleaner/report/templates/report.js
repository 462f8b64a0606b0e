// Pages of the report's long lists, rendered from the JSON blobs in the page. DOM nodes are built
// with textContent (never innerHTML) so a file name cannot inject markup.
(function () {
  "use strict";
  var PAGE = Number(document.body.getAttribute("data-page-size")) || 48;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function lbl(name) { return el("span", "lbl " + name, name); }
  function badge(text, cls) { return el("span", "badge " + (cls || text), text); }
  function pct(p) { return (100 * p).toFixed(1) + "%"; }

  function thumb(item) {
    var box = el("div", "img");
    if (item.thumb) {
      var img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = item.path;
      img.src = item.thumb;
      box.appendChild(img);
    } else {
      box.appendChild(el("div", "noimg", "no preview: " + (item.thumb_error || "unknown")));
    }
    return box;
  }

  function moveCard(m) {
    var c = el("div", "card");
    c.setAttribute("data-id", m.id);
    c.appendChild(thumb(m));
    var head = el("div");
    head.appendChild(badge(m.state));
    head.appendChild(lbl(m.from));
    head.appendChild(document.createTextNode(" \u2192 "));
    head.appendChild(lbl(m.to));
    c.appendChild(head);
    c.appendChild(el("div", "path", m.path));
    if (m.dst) { c.appendChild(el("div", "path muted", "\u2192 " + m.dst)); }
    c.appendChild(el("div", null, "confidence " + pct(m.confidence)));
    var ev = el("div", "ev");
    (m.evidence || []).forEach(function (e) {
      ev.appendChild(el("span", "muted", e[0]));
      ev.appendChild(el("span", null, "p(fake) " + Number(e[1]).toFixed(3)));
      var bar = el("div", "bar");
      bar.style.gridColumn = "1 / span 2";
      var fill = el("span");
      fill.style.width = pct(Number(e[1]));
      bar.appendChild(fill);
      ev.appendChild(bar);
    });
    c.appendChild(ev);
    if (m.why) { c.appendChild(el("div", "muted", m.why)); }
    return c;
  }

  function groupBox(g) {
    var box = el("div", "group" + (g.conflict ? " conflict" : ""));
    var head = el("div");
    head.appendChild(badge(g.members.length + " copies", "n"));
    if (g.conflict) { head.appendChild(badge("label conflict", "conflict")); }
    if (g.leak) { head.appendChild(badge("splits " + g.splits.join(" + "), "leak")); }
    if (g.review_only) {
      head.appendChild(badge("review only: not quarantined", "conflict"));
      head.appendChild(el("span", "muted", " " + g.review_only));
    }
    box.appendChild(head);
    var row = el("div", "members");
    g.members.forEach(function (m) {
      var d = el("div", "member" + (m.kept ? " kept" : ""));
      d.appendChild(thumb(m));
      var line = el("div");
      if (m.kept) { line.appendChild(badge("kept", "kept")); }
      line.appendChild(lbl(m.label));
      line.appendChild(el("span", "muted", " distance " + m.distance));
      if (m.match) { line.appendChild(el("span", "muted", " \u00b7 " + m.match)); }
      if (m.score !== undefined) { line.appendChild(el("span", "muted", " \u00b7 score " + m.score)); }
      if (m.split) { line.appendChild(el("span", "muted", " \u00b7 " + m.split)); }
      d.appendChild(line);
      d.appendChild(el("div", "path", m.path));
      row.appendChild(d);
    });
    box.appendChild(row);
    return box;
  }

  function fileRow(f) {
    var tr = el("tr");
    tr.appendChild(el("td", "path", f.path));
    tr.appendChild(el("td", null, f.label || f.reason));
    tr.appendChild(el("td", null, f.status || ""));
    tr.appendChild(el("td", "muted", f.status ? f.reason : ""));
    return tr;
  }

  function quarantineCard(f) {
    var c = el("div", "card");
    c.appendChild(thumb(f));
    c.appendChild(badge(f.reason, "n"));
    c.appendChild(el("div", "path", f.path));
    if (f.src) { c.appendChild(el("div", "path muted", "from " + f.src)); }
    if (f.why) { c.appendChild(el("div", "muted", f.why)); }
    if (f.run) { c.appendChild(el("div", "muted", "run " + f.run)); }
    return c;
  }

  var RENDER = { moves: moveCard, groups: groupBox, files: fileRow, quarantine: quarantineCard };

  function text(item) {
    return JSON.stringify(item).toLowerCase();
  }

  function setup(box) {
    var blob = document.getElementById(box.getAttribute("data-list"));
    var all = JSON.parse(blob.textContent);
    var render = RENDER[box.getAttribute("data-kind")];
    var target = box.querySelector(".items");
    var pager = el("div", "pager");
    var prev = el("button", null, "\u2190 prev");
    var next = el("button", null, "next \u2192");
    var info = el("span", "muted");
    var filter = el("input");
    filter.type = "search";
    filter.placeholder = "filter (path, label, file...)";
    pager.appendChild(prev); pager.appendChild(info); pager.appendChild(next);
    if (all.length > 1) { pager.appendChild(filter); }
    box.insertBefore(pager, box.firstChild);
    var shown = all, page = 0;
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      page = Math.min(Math.max(0, page), pages - 1);
      var frag = document.createDocumentFragment();
      shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (it) { frag.appendChild(render(it)); });
      target.replaceChildren(frag);
      info.textContent = "page " + (page + 1) + " of " + pages + " \u00b7 " + shown.length + " items";
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    prev.addEventListener("click", function () { page -= 1; draw(); });
    next.addEventListener("click", function () { page += 1; draw(); });
    filter.addEventListener("input", function () {
      var q = filter.value.trim().toLowerCase();
      shown = q ? all.filter(function (it) { return text(it).indexOf(q) >= 0; }) : all;
      page = 0;
      draw();
    });
    draw();
  }

  document.querySelectorAll("[data-list]").forEach(setup);
})();
