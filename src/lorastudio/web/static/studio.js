// Studio: trigger-word completion in the prompt. The words (characters, styles, LoRAs) come with the page
// in data-completions; the list is an ARIA listbox driven from the textarea (↓/↑, Enter or Tab, Escape).
(function () {
  function currentWord(area) {
    const upto = area.value.slice(0, area.selectionStart), m = upto.match(/[\w-]+$/);
    return m ? { word: m[0], start: upto.length - m[0].length } : null;
  }
  function setup(area) {
    const list = document.getElementById("trigger-suggestions"), words = JSON.parse(area.dataset.completions || "[]");
    let items = [], active = -1;
    function close() { list.hidden = true; items = []; active = -1; area.removeAttribute("aria-activedescendant"); }
    function mark() {
      list.querySelectorAll("li").forEach((li, i) => li.setAttribute("aria-selected", i === active ? "true" : "false"));
      if (active >= 0) area.setAttribute("aria-activedescendant", `suggestion-${active}`);
    }
    function accept(i) {
      const at = currentWord(area);
      if (!at || !items[i]) return close();
      const word = items[i].word, after = area.value.slice(area.selectionStart);
      area.value = area.value.slice(0, at.start) + word + (after.startsWith(",") || after.startsWith(" ") ? "" : ", ") + after;
      const caret = at.start + word.length + (after.startsWith(",") || after.startsWith(" ") ? 0 : 2);
      area.setSelectionRange(caret, caret);
      close();
      area.dispatchEvent(new Event("input", { bubbles: true }));
      area.dispatchEvent(new Event("change", { bubbles: true }));
    }
    function show() {
      const at = currentWord(area);
      if (!at || at.word.length < 2) return close();
      const w = at.word.toLowerCase();
      items = words.filter(x => x.word.toLowerCase().startsWith(w) && x.word.toLowerCase() !== w).slice(0, 8);
      if (!items.length) return close();
      list.innerHTML = "";
      items.forEach((x, i) => {
        const li = document.createElement("li");
        li.id = `suggestion-${i}`;
        li.setAttribute("role", "option");
        li.textContent = x.word;
        const note = document.createElement("span");
        note.className = "muted";
        note.textContent = "  " + x.label;
        li.appendChild(note);
        li.addEventListener("mousedown", ev => { ev.preventDefault(); accept(i); });
        list.appendChild(li);
      });
      active = 0;
      list.hidden = false;
      mark();
    }
    area.addEventListener("input", show);
    area.addEventListener("blur", () => setTimeout(close, 100));
    area.addEventListener("keydown", ev => {
      if (list.hidden) return;
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        active = (active + (ev.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
        mark();
      } else if (ev.key === "Enter" || ev.key === "Tab") {
        ev.preventDefault();
        accept(active);
      } else if (ev.key === "Escape") {
        close();
      }
    });
  }
  document.addEventListener("DOMContentLoaded", () => { const a = document.getElementById("prompt"); if (a) setup(a); });
})();

// The scene lives in the address bar (the prompt, the chosen LoRAs with their strengths and regions, seed and
// sampler settings, the base model), replaced as the form changes: a reload, or the link sent to someone, opens
// the same scene.
(function () {
  function sceneQuery(form) {
    const data = new FormData(form), out = new URLSearchParams();
    for (const [name, value] of data) {
      if (typeof value !== "string" || name === "recipe_name" || name === "csrf_token") continue;
      const per = name.match(/^(?:strength|region)_(\d+)$/);
      if (per && !data.has(`use_${per[1]}`)) continue;  // only the chosen LoRAs' settings
      out.append(name, value);
    }
    return out.toString();
  }
  document.addEventListener("DOMContentLoaded", () => {
    const form = document.querySelector("form[data-keep-url]");
    if (!form) return;
    const keep = () => history.replaceState(history.state, "", `${location.pathname}?${sceneQuery(form)}`);
    form.addEventListener("input", keep);
    form.addEventListener("change", keep);
    // Another base model means another family: its LoRAs, strengths, CFG and samplers. The page is drawn for
    // one base, so it reloads with the scene (which the address bar carries) on the new one.
    form.querySelectorAll("[data-reload-on-change]").forEach(el => el.addEventListener("change", () => {
      location.replace(`${location.pathname}?${sceneQuery(form)}`);
    }));
    // A locked seed comes back from the server (not the results' own refreshes, outside the form).
    document.addEventListener("htmx:afterSettle", ev => { if (ev.detail.elt && form.contains(ev.detail.elt)) keep(); });
  });
})();
