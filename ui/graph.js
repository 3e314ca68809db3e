// A build's jobs drawn as a graph: a column per step of the longest dependency chain, an edge from
// each job to every job that waits for it, each node a link to the job's log coloured by status.
// Built from SVG nodes; job ids only ever become text nodes or attribute values.

import { duration, h, route } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const WIDTH = 176;
const HEIGHT = 44;
const GAP_X = 56;
const GAP_Y = 14;
const PAD = 6;
/** Characters of a job id shown in its node; the whole id is in its title. */
const SHOWN = 20;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

/**
 * Each job's column: 0 without dependencies, else one more than its deepest dependency.
 * Dependencies the build does not have count as none; a cycle (which a validated pipeline
 * cannot have) is cut where it is met.
 */
export function columns(jobs) {
  const byId = new Map(jobs.map((j) => [j.jobId, j]));
  const column = new Map();
  const open = new Set();
  const visit = (id) => {
    if (column.has(id)) return column.get(id);
    if (open.has(id)) return 0;
    open.add(id);
    let deepest = 0;
    for (const dep of byId.get(id)?.dependencies ?? []) {
      if (byId.has(dep)) deepest = Math.max(deepest, visit(dep) + 1);
    }
    open.delete(id);
    column.set(id, deepest);
    return deepest;
  };
  for (const job of jobs) visit(job.jobId);
  return column;
}

/** The job graph of build `buildId`; `update(jobs)` redraws it (in place while the jobs and their edges stay the same). */
export function jobGraph(buildId) {
  const box = h('div', { class: 'graph', role: 'group', 'aria-label': 'Job graph' });
  let shape = null;
  const nodes = new Map();

  const draw = (jobs) => {
    const column = columns(jobs);
    const rows = [];
    const place = new Map();
    for (const job of jobs) {
      const c = column.get(job.jobId);
      rows[c] = (rows[c] ?? 0) + 1;
      place.set(job.jobId, { x: PAD + c * (WIDTH + GAP_X), y: PAD + (rows[c] - 1) * (HEIGHT + GAP_Y) });
    }
    const width = PAD * 2 + Math.max(1, rows.length) * (WIDTH + GAP_X) - GAP_X;
    const height = PAD * 2 + Math.max(1, ...rows.map((n) => n ?? 0)) * (HEIGHT + GAP_Y) - GAP_Y;
    const picture = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}` });
    for (const job of jobs) {
      const to = place.get(job.jobId);
      for (const dep of job.dependencies) {
        const from = place.get(dep);
        if (!from) continue;
        const [x1, y1, x2, y2] = [from.x + WIDTH, from.y + HEIGHT / 2, to.x, to.y + HEIGHT / 2];
        const bend = (x2 - x1) / 2;
        picture.append(
          svg('path', {
            class: 'edge',
            'data-from': dep,
            'data-to': job.jobId,
            d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
          }),
        );
      }
    }
    nodes.clear();
    for (const job of jobs) {
      const { x, y } = place.get(job.jobId);
      const title = svg('title');
      const name = svg('text', { x: x + 10, y: y + 18, class: 'name' });
      name.textContent = job.jobId.length > SHOWN ? `${job.jobId.slice(0, SHOWN - 1)}…` : job.jobId;
      const state = svg('text', { x: x + 10, y: y + 35, class: 'state' });
      const node = svg(
        'a',
        { href: route(['builds', buildId, job.jobId]), class: 'node', 'data-job': job.jobId },
        title,
        svg('rect', { x, y, width: WIDTH, height: HEIGHT, rx: 5 }),
        name,
        state,
      );
      picture.append(node);
      nodes.set(job.jobId, { node, title, state });
    }
    box.replaceChildren(picture);
  };

  return {
    node: box,
    update(jobs) {
      // Redrawn only when jobs or edges change: a focused node keeps the keyboard's focus.
      const next = JSON.stringify(jobs.map((j) => [j.jobId, j.dependencies]));
      if (next !== shape) {
        shape = next;
        draw(jobs);
      }
      box.hidden = jobs.length === 0;
      for (const job of jobs) {
        const { node, title, state } = nodes.get(job.jobId);
        const status = job.status ?? 'UNKNOWN';
        const took = job.startedAt ? duration(job.startedAt, job.finishedAt) : '';
        node.setAttribute('class', `node status-${status.toLowerCase()}`);
        node.setAttribute('data-status', status);
        state.textContent = took ? `${status} · ${took}` : status;
        title.textContent = `${job.jobId}: ${status}${took ? `, ${took}` : ''}`;
      }
    },
  };
}
