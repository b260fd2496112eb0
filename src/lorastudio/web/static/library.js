// The library's two behaviours the server cannot render: upload progress, and opening a LoRA's details.
(function () {
  document.addEventListener("htmx:beforeRequest", function (ev) {
    if (ev.target.id !== "library-import") return;
    const bar = ev.target.querySelector("progress");
    bar.hidden = false; bar.removeAttribute("value");  // indeterminate until the browser reports bytes
  });
  document.addEventListener("htmx:xhr:progress", function (ev) {
    if (ev.target.id !== "library-import" || !ev.detail.lengthComputable || !ev.detail.total) return;
    const bar = ev.target.querySelector("progress");
    bar.max = 100; bar.value = Math.round(100 * ev.detail.loaded / ev.detail.total);
  });
  document.addEventListener("click", function (ev) {
    const button = ev.target.closest("[data-lib-toggle]");
    if (!button) return;
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    document.getElementById(button.getAttribute("aria-controls")).hidden = !open;
    const keep = document.getElementById("expanded-" + button.dataset.libToggle);
    if (keep) keep.value = open ? "1" : "";  // sent with the row's actions so a swapped row stays open
  });
  document.addEventListener("DOMContentLoaded", function () {
    const picked = document.querySelector(".lib-highlight");
    if (picked) picked.scrollIntoView({block: "center"});
  });
})();
