// Progressive enhancements only: every page reads and links without this file.
(function () {
  "use strict";
  // Sort the tiles of a layer page.
  var tiles = document.getElementById("tiles");
  var sorter = document.querySelector(".sorter");
  if (tiles && sorter) {
    sorter.hidden = false;
    sorter.addEventListener("click", function (event) {
      var key = event.target.getAttribute("data-sort");
      if (!key) return;
      var items = Array.prototype.slice.call(tiles.children);
      items.sort(function (a, b) {
        var x = parseFloat(a.getAttribute("data-" + key)), y = parseFloat(b.getAttribute("data-" + key));
        return key === "value" ? (y - x) || (a.dataset.neuron - b.dataset.neuron) : x - y;
      });
      items.forEach(function (item) { tiles.appendChild(item); });
      sorter.querySelectorAll("button").forEach(function (button) {
        button.setAttribute("aria-pressed", String(button === event.target));
      });
    });
  }
  // Keyboard: j / k (or arrows) for the previous and next neuron, u for the layer, c / p for the
  // strongest child (a layer down) and parent (a layer up), / to search.
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || /input|textarea|select/i.test(event.target.tagName)) return;
    if (event.key === "/") {
      var box = document.getElementById("search-q") || document.getElementById("find-q");
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    var rel = { "j": "prev", "ArrowLeft": "prev", "k": "next", "ArrowRight": "next", "u": "up" }[event.key];
    var link = rel && document.querySelector('a[rel="' + rel + '"]');
    // c / p: down a layer to the strongest child, up a layer to the strongest parent (over the top patches)
    if (!link && (event.key === "c" || event.key === "p")) {
      link = document.querySelector('a[data-key="' + event.key + '"]');
    }
    if (link) { window.location.href = link.href; }
  });

  // Search (search.html): the index is a script file, so it works from file:// too.
  var input = document.getElementById("search-q");
  var list = document.getElementById("search-results");
  if (input && list && window.SITEGEN_INDEX) {
    var index = window.SITEGEN_INDEX.map(function (e) {
      return { result: e, title: e.t.toLowerCase(), text: (e.t + " " + e.d).toLowerCase() };
    });
    var show = function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      list.textContent = "";
      if (!words.length) return;
      // "change>0.5", "change<0.1": a filter on the change score against another checkpoint
      var limits = [];
      words = words.filter(function (w) {
        var m = /^change([<>])(\d*\.?\d+)$/.exec(w);
        if (m) { limits.push({ above: m[1] === ">", value: parseFloat(m[2]) }); }
        return !m;
      });
      var hits = index.filter(function (e) {
        return words.every(function (w) { return e.text.indexOf(w) >= 0; }) &&
          limits.every(function (l) {
            var c = e.result.c;
            return typeof c === "number" && (l.above ? c > l.value : c < l.value);
          });
      });
      hits.sort(function (a, b) {
        if (!words.length) { return b.result.c - a.result.c; }  // a change filter alone: most changed first
        var x = a.title.indexOf(words[0]) === 0 ? 0 : 1, y = b.title.indexOf(words[0]) === 0 ? 0 : 1;
        return x - y;
      });
      hits.slice(0, 100).forEach(function (hit) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = hit.result.u;
        link.textContent = hit.result.t;
        item.appendChild(link);
        if (hit.result.d) {
          var detail = document.createElement("span");
          detail.className = "muted";
          detail.textContent = " " + hit.result.d.slice(0, 140);
          item.appendChild(detail);
        }
        list.appendChild(item);
      });
      if (!hits.length) {
        var none = document.createElement("li");
        none.textContent = "Nothing found.";
        list.appendChild(none);
      }
    };
    var query = new URLSearchParams(window.location.search).get("q");
    if (query) { input.value = query; }
    input.addEventListener("input", show);
    input.addEventListener("keydown", function (event) {
      var links = Array.prototype.slice.call(list.querySelectorAll("a"));
      if (event.key === "ArrowDown" && links.length) { event.preventDefault(); links[0].focus(); }
      if (event.key === "Enter" && links.length) { window.location.href = links[0].href; }
    });
    list.addEventListener("keydown", function (event) {
      var links = Array.prototype.slice.call(list.querySelectorAll("a"));
      var at = links.indexOf(document.activeElement);
      if (event.key === "ArrowDown" && at + 1 < links.length) { event.preventDefault(); links[at + 1].focus(); }
      if (event.key === "ArrowUp") { event.preventDefault(); (at > 0 ? links[at - 1] : input).focus(); }
    });
    show();
  }
})();
