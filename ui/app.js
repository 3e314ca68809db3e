// The MonkeyCI web UI: hash routes, the signed-in session, and the life of each page's
// subscriptions. Everything it shows comes from the public GraphQL API.

import { session } from './api.js';
import { buildPage } from './build.js';
import { errorBox, h, link, replace } from './dom.js';
import { orgPage, orgsPage, repoPage, signIn } from './pages.js';
import { Subscriptions } from './ws.js';

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
const connection = document.getElementById('connection');
const signOut = document.getElementById('sign-out');
const alert = document.getElementById('alert');

let socket = null;
let current = null;

/** The page a hash names: its kind, its arguments and the key under which it stays mounted. */
function parse(hash) {
  let parts;
  try {
    parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = ['?'];
  }
  const [kind, id, job, line] = parts;
  if (kind === 'orgs' && id) return { key: `org ${id}`, open: (view) => orgPage(view, id) };
  if (kind === 'repos' && id) return { key: `repo ${id}`, open: (view) => repoPage(view, id) };
  if (kind === 'builds' && id) {
    const focus = job ? { job, line: line ? Number(line) : null } : null;
    return { key: `build ${id}`, focus, open: (view) => buildPage(view, id, focus) };
  }
  if (!kind) return { key: 'orgs', open: (view) => orgsPage(view) };
  return { key: 'unknown', open: () => Promise.reject(new Error(`no page at ${hash}`)) };
}

/** What a page gets: where to draw, breadcrumbs, and subscriptions that end with the page. */
function mount() {
  const stops = [];
  let gone = false;
  return {
    show: (...children) => {
      if (!gone) replace(main, ...children);
    },
    crumbs: (trail) => {
      if (gone) return;
      replace(
        crumbs,
        trail.map(([label, segments], n) => [n ? h('span', { 'aria-hidden': 'true' }, ' / ') : null, link(segments, label)]),
      );
    },
    subscribe: (query, variables, handlers) => {
      if (gone) return () => {};
      const stop = socket.subscribe(query, variables, handlers);
      stops.push(stop);
      return stop;
    },
    close: () => {
      gone = true;
      for (const stop of stops) stop();
    },
  };
}

async function render() {
  replace(alert);
  const token = session.token;
  signOut.hidden = !token;
  if (!token) {
    current?.view.close();
    current = null;
    replace(crumbs);
    signIn(main, render);
    return;
  }
  socket ??= new Subscriptions(() => session.token, showConnection);
  const next = parse(location.hash);
  if (current && current.key === next.key && current.page?.focus) {
    current.page.focus(next.focus);
    return;
  }
  current?.view.close();
  const view = mount();
  current = { key: next.key, view, page: null };
  replace(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    current.page = (await next.open(view)) ?? null;
    if (current?.view === view && next.focus) current.page?.focus(next.focus);
  } catch (error) {
    if (current?.view === view) view.show(errorBox(error), h('p', {}, link([], 'Back to the orgs')));
  }
}

function showConnection(state) {
  connection.textContent = state ? `updates: ${state}` : '';
  connection.dataset.state = state;
}

signOut.addEventListener('click', () => {
  session.clear();
  socket?.close();
  socket = null;
  showConnection('');
  render();
});

window.addEventListener('hashchange', render);
render();
