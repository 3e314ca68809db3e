// Building the page from DOM nodes. Text from the API only ever becomes a text node or an
// attribute value, never markup: nothing here parses HTML.

/** An element `tag` with attributes (`on…` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, '');
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

/** Appends strings (as text), nodes and nested arrays of them; skips null and false. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces every child of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A build's or job's status as a badge whose class names its colour. */
export function statusBadge(status) {
  const value = status ?? 'UNKNOWN';
  return h('span', { class: `status status-${value.toLowerCase()}`, 'data-status': value }, value);
}

/** A time as the reader's local date and time, with the exact instant in a tooltip. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const at = new Date(iso);
  return h('time', { datetime: iso, title: iso }, at.toLocaleString());
}

/** How long from `from` to `to` (or to now): "1 m 5 s". */
export function duration(from, to) {
  if (!from) return '';
  const ms = Math.max(0, (to ? new Date(to) : new Date()) - new Date(from));
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

/** An error of the API (or of reaching it) shown with its code and message. */
export function errorBox(error) {
  const code = error?.code ?? 'ERROR';
  return h(
    'p',
    { class: 'error', 'data-code': code },
    h('strong', { class: 'code' }, code),
    ' ',
    h('span', { class: 'message' }, error?.message ?? String(error)),
  );
}

/** A `#/…` link built from path segments, each encoded. */
export function link(segments, ...children) {
  return h('a', { href: route(segments) }, ...children);
}

/** The hash of a route made of path segments. */
export function route(segments) {
  return `#/${segments.map((s) => encodeURIComponent(s)).join('/')}`;
}

/** `true` once a build has ended. */
export function finished(status) {
  return ['SUCCEEDED', 'FAILED', 'ERRORED', 'CANCELED'].includes(status);
}

/**
 * A "Show more" button for a paged list: `load(after)` reads the page after cursor `after` and
 * returns its `pageInfo` (`hasNextPage`, `endCursor`); the button is shown while there is more.
 * Returns the button with `from(pageInfo)`, which sets where the next page starts.
 */
export function more(load, onError) {
  let after = null;
  const button = h('button', { type: 'button', class: 'more', hidden: true }, 'Show more');
  const from = (pageInfo) => {
    after = pageInfo.endCursor;
    button.hidden = !pageInfo.hasNextPage;
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      from(await load(after));
    } catch (error) {
      onError(error);
    } finally {
      button.disabled = false;
    }
  });
  return { button, from };
}
