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
