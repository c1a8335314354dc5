// The swipe: a divider dragged across the map, scenario A's layers drawn left of it and B's
// right of it. One map and one deck.gl overlay draw both: a layer extension discards the
// fragments on the other side of the divider (in the picking pass too). MapLibre's
// interleaved overlay has a single view, and a second map + overlay pair would draw the
// whole city (base map, 3D buildings) twice a frame, which software WebGL cannot afford.
import {LayerExtension} from '@deck.gl/core';

const swipeModule = {
  name: 'swipe',
  fs: `\
layout(std140) uniform swipeUniforms {
  float x;
  float side;
} swipe;
`,
  uniformTypes: {x: 'f32', side: 'f32'}
};

// props: swipeX, the divider's place as a fraction of the map's width; swipeSide, -1 keeps
// what is left of it, 1 what is right of it.
export class SwipeExtension extends LayerExtension {
  getShaders() {
    return {
      modules: [swipeModule],
      inject: {'fs:DECKGL_FILTER_COLOR': 'if ((gl_FragCoord.x - swipe.x) * swipe.side < 0.0) discard;'}
    };
  }

  draw() {
    const {viewport, device} = this.context;
    // gl_FragCoord counts the drawing buffer's pixels, not CSS pixels.
    const width = device.gl?.drawingBufferWidth || viewport.width;
    this.setShaderModuleProps({swipe: {x: this.props.swipeX * width, side: this.props.swipeSide}});
  }
}
SwipeExtension.extensionName = 'SwipeExtension';
SwipeExtension.defaultProps = {swipeX: 0.5, swipeSide: 1};

const SWIPE = new SwipeExtension();

// Props that keep a layer (and its sublayers) to one side of the divider at `x`.
export const onSide = (side, x) => ({extensions: [SWIPE], swipeX: x, swipeSide: side === 'a' ? -1 : 1});

// The divider over `container`, with a label on each side; onMove(x) while it is dragged
// (x clamped to 2-98 %).
export function createDivider(container, onMove) {
  const divider = document.createElement('div');
  divider.id = 'swipe';
  divider.hidden = true;
  divider.setAttribute('role', 'separator');
  divider.tabIndex = 0;
  const handle = document.createElement('span');
  handle.className = 'handle';
  const [left, right] = ['a', 'b'].map(side => Object.assign(document.createElement('span'), {className: `side ${side}`}));
  divider.append(handle, left, right);
  container.append(divider);
  const clamp = x => Math.min(0.98, Math.max(0.02, x));
  const place = x => {
    divider.style.left = `${x * 100}%`;
    divider.setAttribute('aria-valuenow', String(Math.round(x * 100)));
  };
  divider.addEventListener('pointerdown', event => {
    divider.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  divider.addEventListener('pointermove', event => {
    if (!divider.hasPointerCapture(event.pointerId)) return;
    const box = container.getBoundingClientRect();
    const x = clamp((event.clientX - box.left) / box.width);
    place(x);
    onMove(x);
  });
  // Left and right arrows move it by 2 % when it has the focus.
  divider.addEventListener('keydown', event => {
    const step = {ArrowLeft: -0.02, ArrowRight: 0.02}[event.key];
    if (!step) return;
    event.preventDefault();
    event.stopPropagation();
    const x = clamp(Number(divider.getAttribute('aria-valuenow')) / 100 + step);
    place(x);
    onMove(x);
  });
  return {
    // What each side shows, as words over the map.
    label(a, b) {
      left.textContent = a;
      right.textContent = b;
    },
    show(x) {
      divider.hidden = x === null;
      if (x !== null) place(x);
    }
  };
}
