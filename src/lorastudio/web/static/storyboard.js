// The Storyboard page's behaviours htmx has no attribute for: reordering scene cards by drag and drop and
// by Alt+ArrowUp / Alt+ArrowDown on a focused card, and putting focus back after the server's answer is
// swapped in (an element with data-focus="ID" names what to focus). Writes go through htmx.ajax, so they
// carry the page's hx-headers (the X-CSRF-Token) like every other htmx request.
(function () {
  const cardOf = el => (el && el.closest ? el.closest("li.sb-scene") : null);
  const boardId = () => document.getElementById("scenes").dataset.board;

  function post(path, values) {
    const scenes = document.getElementById("scenes");
    return htmx.ajax("POST", path, { source: scenes, target: "#scenes", swap: "outerHTML", values: values });
  }

  document.addEventListener("keydown", ev => {
    if (!ev.altKey || (ev.key !== "ArrowUp" && ev.key !== "ArrowDown")) return;
    const card = cardOf(ev.target);
    if (!card || ev.target !== card) return; // only the card itself: text fields keep their Alt+arrows
    ev.preventDefault();
    const direction = ev.key === "ArrowUp" ? "up" : "down";
    post(`/storyboards/${boardId()}/scenes/${card.dataset.scene}/move`, { direction: direction, then: "card" });
  });

  let dragged = null;
  const below = (card, ev) => { const r = card.getBoundingClientRect(); return ev.clientY > r.top + r.height / 2; };
  function unmark() {
    document.querySelectorAll(".sb-drop-before, .sb-drop-after, .sb-dragging")
      .forEach(el => el.classList.remove("sb-drop-before", "sb-drop-after", "sb-dragging"));
  }
  document.addEventListener("dragstart", ev => {
    const card = cardOf(ev.target);
    if (!card) return;
    dragged = card;
    card.classList.add("sb-dragging");
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", card.dataset.scene);
  });
  document.addEventListener("dragover", ev => {
    const card = cardOf(ev.target);
    if (!dragged || !card || card === dragged) return;
    ev.preventDefault(); // allows the drop
    ev.dataTransfer.dropEffect = "move";
    document.querySelectorAll(".sb-drop-before, .sb-drop-after").forEach(el => el.classList.remove("sb-drop-before", "sb-drop-after"));
    card.classList.add(below(card, ev) ? "sb-drop-after" : "sb-drop-before");
  });
  document.addEventListener("drop", ev => {
    const card = cardOf(ev.target);
    if (!dragged || !card || card === dragged) return;
    ev.preventDefault();
    const moved = dragged.dataset.scene;
    const ids = [...card.parentElement.children].map(li => li.dataset.scene).filter(id => id !== moved);
    ids.splice(ids.indexOf(card.dataset.scene) + (below(card, ev) ? 1 : 0), 0, moved);
    dragged = null;
    unmark();
    post(`/storyboards/${boardId()}/order`, { scene_ids: ids.join(","), moved: moved });
  });
  document.addEventListener("dragend", () => { dragged = null; unmark(); });

  document.addEventListener("htmx:afterSettle", () => {
    document.querySelectorAll("[data-focus]").forEach(holder => {
      const el = document.getElementById(holder.dataset.focus);
      delete holder.dataset.focus;
      if (el) el.focus();
    });
  });
})();
