// ANSI escape sequences of job output → DOM nodes. SGR codes (colours, bold, …) become spans
// with class names the stylesheet colours (the 16 basic colours), or, for 256-colour and
// true-colour codes, a colour set through the span's `style` object (CSSOM, which the page's
// policy allows; never a style attribute); every other sequence is dropped. The text itself only
// ever becomes text nodes, so markup in a log is shown as written.

// CSI sequences (ESC [ params final), OSC sequences (ESC ] … BEL or ESC \), other ESC pairs.
const ESCAPES = /\x1b\[([0-9;:]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?/g;

/** The styling state between SGR codes. */
function plain() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

/** Applies one SGR parameter list to `state`. */
function apply(state, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => Number.parseInt(p || '0', 10));
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    if (code === 0) Object.assign(state, plain());
    else if (code === 1) state.bold = true;
    else if (code === 2) state.dim = true;
    else if (code === 3) state.italic = true;
    else if (code === 4) state.underline = true;
    else if (code === 22) Object.assign(state, { bold: false, dim: false });
    else if (code === 23) state.italic = false;
    else if (code === 24) state.underline = false;
    else if (code >= 30 && code <= 37) state.fg = code - 30;
    else if (code >= 90 && code <= 97) state.fg = code - 90 + 8;
    else if (code === 39) state.fg = null;
    else if (code >= 40 && code <= 47) state.bg = code - 40;
    else if (code >= 100 && code <= 107) state.bg = code - 100 + 8;
    else if (code === 49) state.bg = null;
    else if (code === 38 || code === 48) {
      // 256 colours (5;n): the 16 basic ones by class, the others as rgb(); true colour
      // (2;r;g;b) as rgb().
      const key = code === 38 ? 'fg' : 'bg';
      if (codes[i + 1] === 5) {
        state[key] = palette(codes[i + 2]);
        i += 2;
      } else if (codes[i + 1] === 2) {
        const [r, g, b] = codes.slice(i + 2, i + 5);
        state[key] = [r, g, b].every((c) => c >= 0 && c <= 255) ? `rgb(${r}, ${g}, ${b})` : null;
        i += 4;
      }
    }
  }
}

/** Colour `n` of the 256-colour palette: 0–15 as their class number, the rest as rgb(). */
function palette(n) {
  if (!(n >= 0 && n <= 255)) return null;
  if (n < 16) return n;
  if (n >= 232) {
    const grey = 8 + (n - 232) * 10;
    return `rgb(${grey}, ${grey}, ${grey})`;
  }
  const level = (c) => (c === 0 ? 0 : 55 + c * 40);
  const cube = n - 16;
  return `rgb(${level(Math.floor(cube / 36))}, ${level(Math.floor(cube / 6) % 6)}, ${level(cube % 6)})`;
}

function classes(state) {
  const names = [];
  if (typeof state.fg === 'number') names.push(`fg-${state.fg}`);
  if (typeof state.bg === 'number') names.push(`bg-${state.bg}`);
  for (const flag of ['bold', 'dim', 'italic', 'underline']) if (state[flag]) names.push(flag);
  return names.join(' ');
}

/** One line of output as a fragment of text nodes and styled spans. */
export function renderAnsi(text) {
  const fragment = document.createDocumentFragment();
  const state = plain();
  let at = 0;
  const emit = (part) => {
    if (!part) return;
    const names = classes(state);
    const rgb = [typeof state.fg === 'string', typeof state.bg === 'string'];
    if (!names && !rgb[0] && !rgb[1]) {
      fragment.append(document.createTextNode(part));
      return;
    }
    const span = document.createElement('span');
    if (names) span.className = names;
    if (rgb[0]) span.style.color = state.fg;
    if (rgb[1]) span.style.backgroundColor = state.bg;
    span.textContent = part;
    fragment.append(span);
  };
  for (const match of text.matchAll(ESCAPES)) {
    emit(text.slice(at, match.index));
    at = match.index + match[0].length;
    if (match[2] === 'm') apply(state, match[1]);
  }
  emit(text.slice(at));
  return fragment;
}
