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
  // Keyboard: j / k (or arrows) for the previous and next neuron, u for the layer.
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || /input|textarea|select/i.test(event.target.tagName)) return;
    var rel = { "j": "prev", "ArrowLeft": "prev", "k": "next", "ArrowRight": "next", "u": "up" }[event.key];
    var link = rel && document.querySelector('a[rel="' + rel + '"]');
    if (link) { window.location.href = link.href; }
  });
})();
