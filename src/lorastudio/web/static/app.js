// LoRA Studio's few behaviours the server cannot render: live job progress over Server-Sent Events.
// A container <div data-job-events="ID"> with [data-progress-bar], [data-progress-text], [data-eta],
// [data-loss-curve] (an <svg>) and [data-previews] children is kept up to date; when the job ends the
// element with [data-on-end] is fetched by htmx (hx-trigger="job-ended").
(function () {
  function lossPath(svg, losses) {
    if (!losses || losses.length < 2) return;
    const w = 300, h = 80, xs = losses.map(p => p[0]), ys = losses.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = x => (x1 === x0 ? 0 : (x - x0) / (x1 - x0) * w), sy = y => (y1 === y0 ? h / 2 : h - (y - y0) / (y1 - y0) * h);
    const d = losses.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.innerHTML = `<path d="${d}" fill="none" stroke="#ff7a45" stroke-width="2"/>`;
  }
  function watch(el) {
    const id = el.dataset.jobEvents, q = s => el.querySelector(s);
    const source = new EventSource(`/api/v1/jobs/${id}/events`);
    el._events = source;  // closed when htmx swaps the panel out: a browser has only 6 connections a site
    source.addEventListener("progress", ev => {
      const p = JSON.parse(ev.data), total = p.total || 0, step = p.step || 0;
      const bar = q("[data-progress-bar]");
      if (bar && total) bar.style.width = Math.min(100, 100 * step / total) + "%";
      const text = q("[data-progress-text]");
      if (text) text.textContent = `${p.phase || ""} ${step}/${total}` + (p.loss != null ? ` · loss ${p.loss.toFixed(4)}` : "");
      const eta = q("[data-eta]");
      if (eta && p.eta_seconds != null) eta.textContent = `about ${Math.ceil(p.eta_seconds)} s left`;
      const svg = q("[data-loss-curve]");
      if (svg && p.losses) lossPath(svg, p.losses);
      const previews = q("[data-previews]");
      if (previews && p.previews && previews.childElementCount !== p.previews.length) {
        previews.innerHTML = "";
        p.previews.forEach((_, i) => { const img = document.createElement("img"); img.src = `/api/v1/jobs/${id}/previews/${i}`; img.className = "thumb"; img.alt = `sample preview ${i + 1}`; previews.appendChild(img); });
      }
    });
    source.addEventListener("end", ev => {
      source.close();
      const p = JSON.parse(ev.data);
      el.dataset.status = p.status;
      const text = q("[data-progress-text]");
      if (text) text.textContent = `finished: ${p.status}`;
      htmx.trigger(el, "job-ended");
    });
    source.onerror = () => { if (el.dataset.status) source.close(); };
  }
  function scan(root) {
    root.querySelectorAll("svg[data-losses]").forEach(svg => lossPath(svg, JSON.parse(svg.dataset.losses)));
    root.querySelectorAll("[data-job-events]").forEach(el => { if (!el.dataset.watching) { el.dataset.watching = "1"; watch(el); } }); }
  document.addEventListener("DOMContentLoaded", () => scan(document));
  document.addEventListener("htmx:afterSettle", ev => scan(ev.target));
  document.addEventListener("htmx:beforeCleanupElement", ev => { if (ev.target._events) ev.target._events.close(); });
})();

// Errors of htmx requests. A page route that re-renders a form with its field errors answers 422 with
// that fragment: swap it like a success. Any other error (the server's error handler marks it with
// HX-Retarget) is shown right after the control that caused it, and nothing on the page is replaced.
(function () {
  function place(elt, html) {
    const box = document.createElement("div");
    box.innerHTML = html;
    const text = (box.querySelector("[role=alert]") || box).textContent.trim() || "that did not work";
    const anchor = elt.closest("form") || elt;
    let note = anchor.nextElementSibling;
    if (!note || !note.matches("[data-request-error]")) {
      note = document.createElement("p");
      note.className = "field-error";
      note.setAttribute("role", "alert");
      note.dataset.requestError = "";
      anchor.after(note);
    }
    note.textContent = text;
  }
  document.addEventListener("htmx:beforeSwap", ev => {
    const xhr = ev.detail.xhr;
    if (xhr.status < 400) return;
    if (xhr.getResponseHeader("HX-Retarget")) {
      ev.detail.shouldSwap = false;
      ev.detail.isError = false;
      place(ev.detail.requestConfig.elt, xhr.responseText);
    } else {
      ev.detail.shouldSwap = true;
      ev.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterRequest", ev => {
    if (ev.detail.xhr && ev.detail.xhr.status < 400) {
      const anchor = ev.detail.elt.closest("form") || ev.detail.elt;
      const note = anchor.nextElementSibling;
      if (note && note.matches("[data-request-error]")) note.remove();
    }
  });
  document.addEventListener("htmx:sendError", ev => place(ev.detail.elt, "<p role=alert>the studio did not answer; is it still running?</p>"));
})();
