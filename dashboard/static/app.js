// Live views: an element with data-stream holds a server-rendered fragment
// that the server sends again (event "update") whenever it changes.
// EventSource reconnects by itself when the stream ends.
"use strict";
document.querySelectorAll("[data-stream]").forEach(function (el) {
  var es = new EventSource(el.dataset.stream);
  es.addEventListener("update", function (e) {
    el.innerHTML = e.data;
    el.dataset.updates = String(Number(el.dataset.updates || "0") + 1);
  });
  es.addEventListener("error", function () { el.classList.add("stale"); });
  es.addEventListener("open", function () { el.classList.remove("stale"); });
});
