// vrm ui: follow a running job over server-sent events. Each "update" carries the job's
// fragment, rendered and escaped by the server; "done" means nothing more will change.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("[data-events]")) {
    const source = new EventSource(box.dataset.events);
    source.addEventListener("update", (e) => { box.innerHTML = e.data; });
    source.addEventListener("done", () => { source.close(); box.dataset.done = "yes"; });
  }
});
