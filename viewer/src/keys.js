// Keyboard navigation beside MapLibre's own (with the map focused: arrows pan, +/- zoom,
// Shift+arrows turn and tilt): H back home, D flat or pitched, Esc closes the record,
// L moves the focus to the layer panel, M to the map. Ignored while typing in a field.
export function bindKeys(map, {home, flip, close}) {
  document.addEventListener('keydown', event => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest?.('input, select, textarea')) return;
    const actions = {
      h: home,
      d: flip,
      escape: close,
      l: () => document.querySelector('#layers input')?.focus(),
      m: () => map.getCanvas().focus()
    };
    const action = actions[event.key.toLowerCase()];
    if (!action) return;
    event.preventDefault();
    action();
  });
}
