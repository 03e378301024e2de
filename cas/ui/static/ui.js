// Pan and zoom for lineage graphs (the nodes are plain links).
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("graph");
  const svg = box && box.querySelector("svg");
  if (!svg) return;
  let scale = 1, x = 0, y = 0, drag = null;
  const apply = () => { svg.style.transform = `translate(${x}px, ${y}px) scale(${scale})`; };
  const width = svg.width.baseVal.value, height = svg.height.baseVal.value;
  scale = Math.min(1, (box.clientWidth - 10) / width, (box.clientHeight - 10) / height);  // fit it all in view
  apply();
  box.addEventListener("wheel", (e) => {
    e.preventDefault();
    scale = Math.min(4, Math.max(0.2, scale * (e.deltaY < 0 ? 1.1 : 0.9)));
    apply();
  }, { passive: false });
  box.addEventListener("mousedown", (e) => {
    if (e.target.closest("a")) return;
    drag = { x: e.clientX - x, y: e.clientY - y };
  });
  window.addEventListener("mousemove", (e) => { if (drag) { x = e.clientX - drag.x; y = e.clientY - drag.y; apply(); } });
  window.addEventListener("mouseup", () => { drag = null; });
});
