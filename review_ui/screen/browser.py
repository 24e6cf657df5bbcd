"""What runs in the reviewer's browser: the keyboard shortcuts, the loupe's behaviour, the CSS.

Keys typed while another image is loading wait for it (a defect key pressed right after → is
meant for the next image, not the one leaving), so ``wiring`` tells the page, with
``NAVIGATION_DONE_JS``, when each navigation has been shown.
"""

from __future__ import annotations

NAVIGATION_DONE_JS = "() => { window.ppNavigationDone && window.ppNavigationDone(); }"
TOGGLE_ZOOM_JS = "() => { window.ppLoupe.toggleZoom(); }"
TOGGLE_HEAT_JS = "() => { window.ppLoupe.toggleHeat(); }"

SHORTCUTS_HELP = (
    "**Keys:** `g` Good · `p` Poor (with the defect chosen below) · `1`–`7` choose the defect · "
    "`u` undo · `←` `→` previous / next image · `z` fit / 100 % · `h` heat-map · `a` keep a burst's pick · "
    "at 100 %: arrows or drag to pan"
)

# Document-level, so it works whatever has focus except a text field the reviewer is typing in.
HEAD = """
<script>
(() => {
  const BUTTONS = {g: "mark-good", p: "mark-poor", u: "undo", ArrowRight: "next-image", ArrowLeft: "prev-image",
                   a: "burst-accept"};
  const NAVIGATION = "#next-image, #prev-image, #gallery .thumbnail-item";
  const keys = {pending: 0, queue: [], safety: null};
  const loupe = {zoomed: false, heat: false, syncing: false};

  // -- keys wait for the image they are meant for ------------------------------------------------
  function navigationStarted() {
    keys.pending += 1;
    clearTimeout(keys.safety);  // a navigation that never reports back must not hold keys for ever
    keys.safety = setTimeout(() => { keys.pending = 0; flush(); }, 5000);
  }
  window.ppNavigationDone = () => {
    keys.pending = Math.max(0, keys.pending - 1);
    if (keys.pending === 0) { clearTimeout(keys.safety); setTimeout(flush, 30); }
  };
  function flush() { while (keys.queue.length && keys.pending === 0) perform(keys.queue.shift()); }
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest(NAVIGATION)) navigationStarted();
  }, true);

  function perform(key) {
    if (/^[1-7]$/.test(key)) {
      const choice = document.querySelectorAll("#override-defect input[type=radio]")[Number(key) - 1];
      if (choice) choice.click();
      return;
    }
    if (key === "z") return loupe.toggleZoom();
    if (key === "h") return loupe.toggleHeat();
    const button = document.getElementById(BUTTONS[key]);
    // "a" acts only in the Bursts view; the other keys work from any view.
    if (button && !button.disabled && (key !== "a" || button.offsetParent)) button.click();
  }

  function typingIn(target) {
    return target && (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(target.type)));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typingIn(event.target)) return;
    if (loupe.zoomed && event.key.startsWith("Arrow") && panes().length) {
      event.preventDefault();
      const [dx, dy] = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]}[event.key];
      const first = panes()[0];
      first.scrollBy(dx * first.clientWidth * 0.2, dy * first.clientHeight * 0.2);
      return;
    }
    if (!(/^[1-7]$/.test(event.key) || event.key in BUTTONS || event.key === "z" || event.key === "h")) return;
    event.preventDefault();
    if (keys.pending > 0) keys.queue.push(event.key); else perform(event.key);
  });

  // -- the loupe: fit or 100 %, pan, heat-map, locked panes -------------------------------------
  // The panes on screen: the inspector's loupe, or the compare view's two to four.
  function panes() { return [...document.querySelectorAll(".pp-loupe[data-width]")].filter(p => p.offsetParent); }
  function size(pane) { return [Number(pane.dataset.width), Number(pane.dataset.height)]; }
  function layout(pane) {
    const [width, height] = size(pane);
    const canvas = pane.querySelector(".pp-loupe-canvas");
    const scale = loupe.zoomed ? 1 : Math.min(pane.clientWidth / width, pane.clientHeight / height, 1);
    canvas.style.width = `${Math.round(width * scale)}px`;
    canvas.style.height = `${Math.round(height * scale)}px`;
    pane.classList.toggle("pp-zoomed", loupe.zoomed);
    pane.classList.toggle("pp-heat-on", loupe.heat);
  }
  function centreOn(pane, fx, fy) {
    const [width, height] = size(pane);
    pane.scrollLeft = Math.round(fx * width - pane.clientWidth / 2);
    pane.scrollTop = Math.round(fy * height - pane.clientHeight / 2);
  }
  function focusOf(pane) { return [Number(pane.dataset.focusX), Number(pane.dataset.focusY)]; }
  function setZoom(zoomed, point) {
    loupe.zoomed = zoomed;
    const shown = panes();
    // Locked panes: all centre on one point, the one clicked or the first pane's flagged region.
    const centre = point || (shown.length ? focusOf(shown[0]) : null);
    for (const pane of shown) {
      layout(pane);
      if (zoomed) centreOn(pane, ...centre);
    }
  }
  loupe.toggleZoom = (point) => setZoom(!loupe.zoomed, point);
  loupe.toggleHeat = () => { loupe.heat = !loupe.heat; panes().forEach(layout); };
  loupe.state = () => ({zoomed: loupe.zoomed, heat: loupe.heat});
  window.ppLoupe = loupe;

  // Panes of the compare view move together: the same point of each image stays in the middle.
  document.addEventListener("scroll", (event) => {
    const source = event.target;
    if (loupe.syncing || !(source instanceof Element) || !source.matches(".pp-loupe[data-width]")) return;
    const [width, height] = size(source);
    const fx = (source.scrollLeft + source.clientWidth / 2) / width;
    const fy = (source.scrollTop + source.clientHeight / 2) / height;
    loupe.syncing = true;
    for (const pane of panes()) if (pane !== source) centreOn(pane, fx, fy);
    requestAnimationFrame(() => { loupe.syncing = false; });
  }, true);

  const drag = {pane: null, x: 0, y: 0, moved: false};
  document.addEventListener("mousedown", (event) => {
    const pane = event.target.closest && event.target.closest(".pp-loupe[data-width]");
    if (!pane || event.button !== 0 || !pane.offsetParent) return;
    event.preventDefault();
    Object.assign(drag, {pane, x: event.clientX, y: event.clientY, moved: false});
  });
  document.addEventListener("mousemove", (event) => {
    if (!drag.pane) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (drag.moved && loupe.zoomed) {
      drag.pane.scrollBy(-dx, -dy);
      drag.x = event.clientX; drag.y = event.clientY;
    }
  });
  document.addEventListener("mouseup", (event) => {
    const pane = drag.pane;
    drag.pane = null;
    if (!pane || drag.moved) return;
    // A click zooms to 100 % on the point clicked, or back to fit.
    const canvas = pane.querySelector(".pp-loupe-canvas").getBoundingClientRect();
    const point = [(event.clientX - canvas.left) / canvas.width, (event.clientY - canvas.top) / canvas.height];
    setZoom(!loupe.zoomed, point);
  });

  // A new image (or compare pane) arrives as new markup: lay it out in the current mode.
  // Panes that were hidden (another tab) are laid out again when they show.
  new MutationObserver(() => {
    const fresh = panes().filter(p => !p.dataset.ready || p.dataset.laidOutFor !== String(p.clientWidth));
    if (!fresh.length) return;
    const centre = focusOf(panes()[0]);
    for (const pane of fresh) {
      pane.dataset.ready = "1";
      pane.dataset.laidOutFor = String(pane.clientWidth);
      layout(pane);
      if (loupe.zoomed) centreOn(pane, ...centre);
    }
  }).observe(document.documentElement, {childList: true, subtree: true, attributes: true, attributeFilter: ["style", "class"]});
  window.addEventListener("resize", () => panes().forEach(layout));

})();
</script>
"""

CSS = """
#gallery .caption-label { font-size: 0.72rem; white-space: normal; overflow: visible; text-overflow: clip;
  max-width: 100%; line-height: 1.2; overflow-wrap: anywhere; }
#status { min-height: 1.5em; }
#counts table { font-size: 0.8rem; margin: 0; }
#counts td, #counts th { padding: 2px 8px; }
#mark-good { background: #2f8f46; color: white; }
#mark-poor { background: #c0392b; color: white; }
.pp-loupe { position: relative; height: 520px; overflow: hidden; background: #161616; display: flex;
  align-items: center; justify-content: center; user-select: none; cursor: zoom-in; border-radius: 6px; }
.pp-loupe.pp-empty { color: #aaa; font-size: 0.9rem; }
#compare-panes .pp-loupe { height: 620px; }
.pp-loupe.pp-zoomed { display: block; overflow: scroll; cursor: grab; scrollbar-width: none; }
.pp-loupe-canvas { position: relative; flex: none; }
.pp-loupe.pp-zoomed .pp-loupe-canvas { margin: 0 auto; }
.pp-loupe img.pp-loupe-image { display: block; width: 100%; height: 100%; max-width: none !important;
  max-height: none !important; margin: 0; border-radius: 0; }
.pp-heatmap { position: absolute; inset: 0; display: none; pointer-events: none; }
.pp-loupe.pp-heat-on .pp-heatmap { display: grid; }
.pp-heat-cell { outline: 1px solid rgba(255, 255, 255, 0.08); }
"""
