// Train New LoRA: drag-and-drop (or chosen) files go up a few at a time, an image together with its
// same-named .txt caption and a zip on its own, so each file's verdict appears as soon as it is checked.
(function () {
  function isZip(f) { return /\.zip$/i.test(f.name); }
  function stem(name) { return name.replace(/\.[^.]*$/, "").toLowerCase(); }
  function batches(files) {
    const captions = new Map(), out = [];
    for (const f of files) if (/\.txt$/i.test(f.name)) captions.set(stem(f.name), f);
    for (const f of files) {
      if (/\.txt$/i.test(f.name)) continue;
      const pair = captions.get(stem(f.name));
      if (pair) captions.delete(stem(f.name));
      out.push(pair ? [f, pair] : [f]);
    }
    for (const orphan of captions.values()) out.push([orphan]);  // the server says it has no image
    // A few images a request: every request re-checks the whole set (duplicates need all of it).
    const merged = [];
    for (const group of out) {
      const last = merged[merged.length - 1];
      if (last && last.length + group.length <= 6 && !group.some(isZip) && !last.some(isZip)) last.push(...group);
      else merged.push(group.slice());
    }
    return merged;
  }
  function send(url, group, onProgress) {
    return new Promise(resolve => {
      const body = new FormData();
      group.forEach(f => body.append("files", f, f.name));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("HX-Request", "true");
      xhr.setRequestHeader("X-CSRF-Token", document.querySelector("meta[name=csrf-token]").content);
      xhr.upload.onprogress = ev => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total); };
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => resolve(null);
      xhr.send(body);
    });
  }
  function errorText(html) {
    const box = document.createElement("div");
    box.innerHTML = html;
    return (box.querySelector("[role=alert]") || box).textContent.trim();
  }
  async function upload(zone, files) {
    const status = zone.querySelector("#upload-status"), bar = zone.querySelector("#upload-progress");
    const groups = batches(Array.from(files)), problems = [], total = groups.reduce((n, g) => n + g.length, 0);
    let sent = 0;
    bar.hidden = false;
    for (let i = 0; i < groups.length; i++) {
      const names = groups[i].map(f => f.name).join(" + ");
      status.textContent = `Uploading ${sent + 1}-${sent + groups[i].length} of ${total} files: ${names}`;
      const xhr = await send(zone.dataset.uploadUrl, groups[i], part => { bar.value = (i + part) / groups.length; });
      if (xhr && xhr.status < 400) {
        const list = document.getElementById("dataset-images");
        list.outerHTML = xhr.responseText;
        htmx.process(document.getElementById("dataset-images"));
        document.body.dispatchEvent(new Event("refresh-estimate"));
        sent += groups[i].length;
      } else {
        problems.push(`${names}: ${xhr ? errorText(xhr.responseText) : "the studio did not answer"}`);
      }
    }
    bar.value = 1;
    bar.hidden = true;
    status.textContent = `Uploaded ${sent} of ${total} files.` + (problems.length ? " Not uploaded: " + problems.join("; ") : "");
    status.className = problems.length ? "field-error" : "ok";
    if (problems.length) status.setAttribute("role", "alert"); else status.removeAttribute("role");
  }
  document.addEventListener("DOMContentLoaded", () => {
    const zone = document.getElementById("dropzone"), input = document.getElementById("file-input");
    if (!zone) return;
    zone.addEventListener("dragover", ev => { ev.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", ev => { ev.preventDefault(); zone.classList.remove("over"); upload(zone, ev.dataTransfer.files); });
    input.addEventListener("change", () => { upload(zone, input.files); input.value = ""; });
  });
})();

// The training form outlives a reload: what was typed (description, preset, Advanced) is kept per dataset in
// localStorage, so another tab of the same dataset starts from it too and follows it as it changes there.
// It runs before htmx starts, so the first estimate is for the kept values.
(function () {
  const form = document.querySelector("form[data-keep-form]");
  if (!form) return;
  const key = form.dataset.keepForm;
  const fields = () => Array.from(form.elements).filter(el => el.name && el.name !== "idempotency_key" && el.name !== "csrf_token");
  function read() { try { return JSON.parse(localStorage.getItem(key) || "{}"); } catch (e) { return {}; } }
  function apply(kept, skip) {
    fields().forEach(el => {
      if (el === skip || !Object.prototype.hasOwnProperty.call(kept, el.name)) return;
      if (el.tagName === "SELECT" && !Array.from(el.options).some(o => o.value === kept[el.name])) return;  // gone since
      el.value = kept[el.name];
    });
    showDefaults();
    // Settings typed before the reload are in sight again (not those the chosen base hides).
    form.querySelectorAll("details").forEach(d => { if (Array.from(d.querySelectorAll("input, select")).some(el => el.value && !el.disabled)) d.open = true; });
  }
  function save() {
    const kept = {};
    fields().forEach(el => { kept[el.name] = el.value; });
    try { localStorage.setItem(key, JSON.stringify(kept)); } catch (e) { /* storage full or off: nothing kept */ }
  }
  // Empty Advanced fields show what the chosen preset will use on the chosen base's family (resolution, learning
  // rate, steps... differ per family), and the presets say their values there too. A field the user typed keeps
  // its value: only the empty ones, which the server fills from the same preset and family, follow the base.
  // The transformer-only settings show (and are sent) only with a transformer base.
  const byFamily = JSON.parse(form.dataset.familyPresets || "{}");
  function showDefaults() {
    const base = form.querySelector("#base").selectedOptions[0], presetSelect = form.querySelector("#preset");
    const presets = byFamily[base ? base.dataset.family : ""] || {};
    Array.from(presetSelect.options).forEach(o => { if (presets[o.value]) o.textContent = presets[o.value].label; });
    const option = presetSelect.selectedOptions[0], flow = !!base && base.dataset.flow === "yes";
    const values = option && presets[option.value] ? presets[option.value].values : {};
    form.querySelectorAll("[data-transformer-only]").forEach(box => {
      box.hidden = !flow;
      box.querySelectorAll("input, select").forEach(el => { el.disabled = !flow; });
    });
    Object.entries(values).forEach(([name, value]) => {
      const el = form.elements.namedItem(name);
      if (!el) return;
      if (el.tagName === "SELECT") { const first = el.querySelector("[data-preset-option]"); if (first) first.textContent = `preset's (${value})`; }
      else el.placeholder = value;
    });
  }
  apply(read(), null);
  form.addEventListener("input", save);
  form.addEventListener("change", ev => { save(); if (ev.target.id === "preset" || ev.target.id === "base") showDefaults(); });
  window.addEventListener("storage", ev => {
    if (ev.key !== key) return;
    apply(read(), document.activeElement);
    document.body.dispatchEvent(new Event("refresh-estimate"));
  });

  // A field's error (swapped in beside it by the server) marks the field and opens the panels around it.
  function markErrors() {
    document.querySelectorAll("[data-error-for]").forEach(note => {
      const field = document.getElementById(note.dataset.errorFor), bad = note.textContent.trim() !== "";
      if (!field) return;
      if (bad) field.setAttribute("aria-invalid", "true"); else field.removeAttribute("aria-invalid");
      for (let d = note.closest("details"); bad && d; d = d.parentElement.closest("details")) d.open = true;
    });
  }
  document.addEventListener("htmx:afterSettle", markErrors);
  document.addEventListener("htmx:oobAfterSwap", markErrors);
})();
