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
  function scan(root) { root.querySelectorAll("[data-job-events]").forEach(el => { if (!el.dataset.watching) { el.dataset.watching = "1"; watch(el); } }); }
  document.addEventListener("DOMContentLoaded", () => scan(document));
  document.addEventListener("htmx:afterSettle", ev => scan(ev.target));
})();
