// LoRA Studio's few behaviours the server cannot render: live job progress over Server-Sent Events.
// A job panel <section data-job-events="ID"> with [data-job-status], [data-progress-bar],
// [data-progress-text], [data-eta], [data-loss-curve] (an <svg>) and [data-previews] children is kept up to
// date; when the job ends it fires "job-ended" and htmx fetches the finished panel (hx-trigger="job-ended").
// A scored training also has [data-score-curves] (an <svg>) and [data-eval-renders] (the renders' strip).
(function () {
  // A browser opens at most 6 connections to a site: past this many streams a panel polls instead, so
  // a page full of running jobs still leaves connections for the forms.
  const MAX_STREAMS = 3, POLL_MS = 2000, FINAL = ["succeeded", "failed", "canceled"];
  let streams = 0;
  function lossPath(svg, losses) {
    if (!losses || losses.length < 2) return;
    const w = 300, h = 80, xs = losses.map(p => p[0]), ys = losses.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = x => (x1 === x0 ? 0 : (x - x0) / (x1 - x0) * w), sy = y => (y1 === y0 ? h / 2 : h - (y - y0) / (y1 - y0) * h);
    const d = losses.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.innerHTML = `<path d="${d}" fill="none" stroke="#ff7a45" stroke-width="2"/>`;
  }
  // The measures drawn, as web/pages/jobs.py picks them: the first one scored stands for identity, the first for
  // prompt adherence, and the change from the base.
  const CURVES = [
    ["identity", ["dino", "clip_i", "hit_rate"], "#4f8cff"],
    ["adherence", ["clip_t", "adherence_hits"], "#2fb380"],
    ["change", ["change"], "#b36ad9"],
  ];
  const MEASURE_WORDS = {
    dino: "identity (DINO)", clip_i: "identity (CLIP-I)", hit_rate: "identity (toy detectors)",
    clip_t: "prompt adherence (CLIP-T)", adherence_hits: "prompt adherence (toy detectors)", change: "change from the base",
  };
  function scorePaths(svg, scores) {
    if (!scores || !scores.length) return;
    const w = 300, h = 80, pad = 4;
    const curves = CURVES.map(([role, names, colour]) => {
      const name = names.find(n => scores.some(s => s[n] != null));
      return name && { role, name, colour, points: scores.filter(s => s[name] != null).map(s => [s.step, s[name]]) };
    }).filter(Boolean);
    const values = curves.flatMap(c => c.points.map(p => p[1])), steps = scores.map(s => s.step);
    if (!values.length) return;
    const x0 = Math.min(...steps), x1 = Math.max(...steps), y0 = Math.min(...values), y1 = Math.max(...values);
    const sx = x => pad + (x1 === x0 ? (w - 2 * pad) / 2 : (x - x0) / (x1 - x0) * (w - 2 * pad));
    const sy = y => (y1 === y0 ? h / 2 : h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad));
    const parts = [];
    const marker = (step, colour, dash, attr, words) => {
      if (step === "" || step == null || isNaN(Number(step))) return;
      const x = sx(Number(step)).toFixed(1);
      parts.push(`<line ${attr} x1="${x}" x2="${x}" y1="0" y2="${h}" stroke="${colour}" stroke-width="2" stroke-dasharray="${dash}"><title>${words} ${Number(step)}</title></line>`);
    };
    marker(svg.dataset.overtrained, "#e5484d", "2 3", "data-overtrained-marker", "over-training after step");
    marker(svg.dataset.chosen, "#f5a524", "5 3", "data-chosen-marker", "chosen checkpoint: step");
    curves.forEach(c => {
      const d = c.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
      parts.push(`<path data-curve="${c.role}" d="${d}" fill="none" stroke="${c.colour}" stroke-width="2"/>`);
      c.points.forEach(p => parts.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${c.colour}"><title>${MEASURE_WORDS[c.name]} at step ${p[0]}: ${Number(p[1]).toFixed(3)}</title></circle>`));
      const legend = svg.closest("figure") && svg.closest("figure").querySelector(`[data-legend="${c.role}"]`);
      if (legend) legend.textContent = MEASURE_WORDS[c.name];
    });
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.innerHTML = parts.join("");
  }
  function renderStrip(strip, shown) {
    // One figure per evaluated checkpoint, its renders side by side; only what is new is added.
    const have = new Set(Array.from(strip.querySelectorAll("[data-step]")).map(f => f.dataset.step));
    shown.forEach(([step, blobs]) => {
      if (have.has(String(step))) return;
      const fig = document.createElement("figure"), cap = document.createElement("figcaption"), row = document.createElement("div");
      fig.className = "eval-checkpoint"; fig.dataset.step = step; row.className = "eval-renders";
      cap.textContent = step === 0 ? "base (no LoRA)" : `step ${step}`;
      blobs.forEach((_, i) => {
        const img = document.createElement("img");
        img.className = "thumb"; img.loading = "lazy"; img.src = `${strip.dataset.rendersUrl}${step}/${i}`;
        img.alt = `${step === 0 ? "base" : "step " + step}, evaluation prompt ${i + 1}`;
        row.appendChild(img);
      });
      fig.append(cap, row);
      const after = Array.from(strip.children).find(f => Number(f.dataset.step) > step);
      strip.insertBefore(fig, after || null);
    });
  }
  function showStatus(el, status) {
    // A cancel asked for stays said until the job ends: the worker stops at its next step.
    const words = el.dataset.cancelRequested && !FINAL.includes(status) ? "canceling…" : status;
    const badge = el.querySelector("[data-job-status]");
    if (badge && badge.textContent !== words) {
      badge.textContent = words;
      badge.className = badge.className.replace(/\bstatus-\S+/g, "").trim() + ` status-${status}`;
    }
    el.dataset.status = status;
  }
  function progress(el, p) {
    const q = s => el.querySelector(s), total = p.total || 0, step = p.step || 0;
    if (p.status) showStatus(el, p.status);
    const bar = q("[data-progress-bar]");
    if (bar && total) bar.style.width = Math.min(100, 100 * step / total) + "%";
    const text = q("[data-progress-text]");
    if (text && (p.status !== "pending" || step)) {
      text.textContent = `${p.phase || ""} ${step}/${total}` + (p.loss != null ? ` · loss ${p.loss.toFixed(4)}` : "");
    }
    const eta = q("[data-eta]");
    if (eta && p.eta_seconds != null) eta.textContent = `about ${Math.ceil(p.eta_seconds)} s left`;
    const svg = q("[data-loss-curve]");
    if (svg && p.losses) lossPath(svg, p.losses);
    const curves = q("[data-score-curves]");
    if (curves && p.scores && p.scores.length) scorePaths(curves, p.scores);
    const strip = q("[data-eval-renders]");
    if (strip && p.eval_renders) renderStrip(strip, p.eval_renders);
    const previews = q("[data-previews]");
    if (previews && p.previews && previews.childElementCount !== p.previews.length) {
      previews.innerHTML = "";
      p.previews.forEach((_, i) => { const img = document.createElement("img"); img.src = el.dataset.previewsUrl + i; img.className = "thumb"; img.alt = `sample preview ${i + 1}`; previews.appendChild(img); });
    }
  }
  function ended(el, status) {
    showStatus(el, status);
    const text = el.querySelector("[data-progress-text]");
    if (text) text.textContent = `finished: ${status}`;
    htmx.trigger(el, "job-ended");
  }
  function poll(el) {
    // No stream to spare: the panel is fetched again until a stream frees up or the job ends.
    el._poll = setTimeout(() => {
      if (!el.isConnected) return;
      htmx.ajax("GET", el.getAttribute("hx-get"), { source: el, target: el, swap: "outerHTML" }).then(() => {
        const fresh = document.getElementById(el.id);  // ended: what listens for an end (the balance) hears it
        if (fresh && FINAL.includes(fresh.dataset.status)) htmx.trigger(document.body, "job-ended");
      });
    }, POLL_MS);
  }
  function watch(el) {
    if (streams >= MAX_STREAMS) return poll(el);
    const source = new EventSource(el.dataset.eventsUrl);  // the page names every URL (web/urls.py)
    let open = true;
    streams += 1;
    const close = () => { if (open) { open = false; streams -= 1; source.close(); } };
    el._events = { close };  // closed when htmx swaps the panel out
    source.addEventListener("progress", ev => progress(el, JSON.parse(ev.data)));
    source.addEventListener("end", ev => { close(); ended(el, JSON.parse(ev.data).status); });
    // The browser reconnects a dropped stream by itself; one it gave up on (an error answer) is let go.
    source.onerror = () => { if (source.readyState === EventSource.CLOSED || FINAL.includes(el.dataset.status)) close(); };
  }
  function scan(root) {
    if (!root.querySelectorAll) return;
    const all = sel => (root.matches && root.matches(sel) ? [root] : []).concat(Array.from(root.querySelectorAll(sel)));
    all("svg[data-losses]").forEach(svg => lossPath(svg, JSON.parse(svg.dataset.losses)));
    all("svg[data-scores]").forEach(svg => scorePaths(svg, JSON.parse(svg.dataset.scores)));
    all("[data-job-events]").forEach(el => { if (!el.dataset.watching) { el.dataset.watching = "1"; watch(el); } });
  }
  // htmx.onLoad runs for the first page and for every element htmx puts in, an outerHTML swap's included
  // (a job panel swapped after Cancel is the new element itself, not a child of the event's target).
  htmx.onLoad(scan);
  document.addEventListener("htmx:beforeCleanupElement", ev => {
    if (ev.target._events) ev.target._events.close();
    if (ev.target._poll) clearTimeout(ev.target._poll);
  });
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

// Behaviours a template would otherwise write inline (the Content-Security-Policy runs no inline code): a form
// with data-confirm asks first; a range input with data-shows-value writes its value into the <output> after it.
(function () {
  document.addEventListener("submit", ev => {
    const form = ev.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) { ev.preventDefault(); ev.stopImmediatePropagation(); }
  }, true);
  document.addEventListener("input", ev => {
    const input = ev.target;
    if (!input.matches || !input.matches("input[data-shows-value]")) return;
    const output = input.nextElementSibling;
    if (output && output.tagName === "OUTPUT") output.value = Number(input.value).toFixed(2);
  });
})();
