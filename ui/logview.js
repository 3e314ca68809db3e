// A job's log as a window onto its lines. Only the lines in view (and a few around them) are in
// the page; they are fetched a page at a time (`Job.log`) and a bounded number of pages is kept,
// so a log of a million lines opens at its end at once and the tab holds a few thousand lines
// whatever the log's size. New lines arrive by `jobLog`, from the last line that was stored when
// the view opened. Search runs on the server (`Job.logSearch`).

import { gql } from './api.js';
import { renderAnsi } from './ansi.js';
import { errorBox, h, replace, route } from './dom.js';

/** Height of a line in pixels: every line has it (lines do not wrap), so line n is at (n-1)·LINE. */
const LINE = 18;
/** Lines per fetch, and how many such pages the view keeps. */
const PAGE = 500;
const KEEP = 24;
/** Lines drawn beyond each edge of the view. */
const OVERSCAN = 15;
/** The tallest scroll area; a longer log maps its lines onto this height. */
const MAX_HEIGHT = 2_000_000;

const LINES = 'offset at stream text';

/** A line's time of day, to the millisecond, in the browser's time zone: `14:03:07.215`. */
function clock(iso) {
  const at = new Date(iso);
  const two = (n) => String(n).padStart(2, '0');
  return `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}.${String(at.getMilliseconds()).padStart(3, '0')}`;
}

/**
 * The log of job `job` (`{ id, jobId }`) of build `buildId`. `follow` is the "Follow the end"
 * checkbox, `state` where the end of the log and errors are told. Returns the view's node and
 * `open()` (starts it; again after an error), `show(line)` (a linked line), `find(text, back)`.
 */
export function logView(view, buildId, job, follow, state) {
  const rows = h('div', { class: 'log-rows' });
  const space = h('div', { class: 'log-space' }, rows);
  const box = h('div', { class: 'log', tabindex: '0', role: 'region', 'aria-label': `Log of ${job.jobId}` }, space);

  // Stored lines known (the number of the last one), pages of lines by index, and the pages
  // being fetched. A page is a sparse array; `seenAt` is the count when it was last fetched, so a
  // page is fetched again only when lines it lacks may have been stored since.
  let count = 0;
  const pages = new Map();
  const fetching = new Set();
  let started = false;
  let opening = null;
  let live = 0;
  let stop = null;
  let ended = false;
  let target = null;
  let match = null;
  // Scroll events caused by the view itself do not change "Follow the end".
  let ownScroll = false;
  let frame = 0;
  // The next drawing scrolls to the end first (following, or opening at the end).
  let toTheEnd = false;

  const scaled = () => count * LINE > MAX_HEIGHT;
  const height = () => Math.min(count * LINE, MAX_HEIGHT);
  const inView = () => Math.max(1, Math.ceil((box.clientHeight || 400) / LINE));
  /** The first line in view (1-based). */
  const firstInView = () => {
    if (!scaled()) return Math.floor(box.scrollTop / LINE) + 1;
    const room = height() - box.clientHeight;
    const share = room > 0 ? box.scrollTop / room : 0;
    return Math.round(share * Math.max(0, count - inView())) + 1;
  };
  const scrollFor = (line) => {
    if (!scaled()) return (line - 1) * LINE;
    const room = height() - box.clientHeight;
    return ((line - 1) / Math.max(1, count - inView())) * room;
  };
  const setScroll = (top) => {
    const wanted = Math.max(0, Math.min(top, height() - box.clientHeight));
    if (Math.abs(box.scrollTop - wanted) < 1) return;
    ownScroll = true;
    box.scrollTop = wanted;
  };
  const atEnd = () => box.scrollTop + box.clientHeight >= box.scrollHeight - 2;

  const pageOf = (line) => Math.floor((line - 1) / PAGE);
  const lineAt = (line) => {
    const page = pages.get(pageOf(line));
    return page?.lines[(line - 1) % PAGE];
  };
  const keep = (index) => {
    let page = pages.get(index);
    if (page) {
      pages.delete(index);
    } else {
      page = { lines: [], seenAt: 0 };
    }
    pages.set(index, page);
    return page;
  };
  const store = (line) => {
    keep(pageOf(line.offset)).lines[(line.offset - 1) % PAGE] = line;
  };
  /** Forgets the least recently used pages, never those in view. */
  const trim = (from, to) => {
    for (const index of pages.keys()) {
      if (pages.size <= KEEP) break;
      if (index >= pageOf(from) && index <= pageOf(to)) continue;
      pages.delete(index);
    }
  };
  const fetchPage = async (index) => {
    if (fetching.has(index)) return;
    fetching.add(index);
    const askedAt = count;
    try {
      const data = await gql(
        `query($job: ID!, $after: Int!, $first: Int!) { job(id: $job) { log(after: $after, first: $first) { ${LINES} } } }`,
        { job: job.id, after: index * PAGE, first: PAGE },
      );
      for (const line of data.job?.log ?? []) store(line);
      keep(index).seenAt = askedAt;
    } catch (error) {
      replace(state, errorBox(error));
    } finally {
      fetching.delete(index);
    }
    draw();
  };

  const makeRow = (n) => {
    const line = lineAt(n);
    if (!line) {
      return h('div', { class: 'line pending', 'data-pending': n }, h('span', { class: 'ln' }, String(n)), h('span', { class: 'text' }, '…'));
    }
    const number = h('a', { class: 'ln', href: route(['builds', buildId, job.jobId, String(n)]), title: line.at }, String(n));
    const at = h('time', { class: 'at', datetime: line.at }, clock(line.at));
    const text = h('span', { class: 'text' });
    text.append(renderAnsi(line.text));
    const classes = ['line', line.stream, n === target ? 'target' : '', n === match ? 'match' : ''].filter(Boolean).join(' ');
    return h('div', { class: classes, 'data-line': n }, number, at, text);
  };
  const rowLine = (row) => Number(row.dataset.line ?? row.dataset.pending);
  const current = (row, n) => {
    const loaded = 'line' in row.dataset;
    if (loaded !== Boolean(lineAt(n))) return false;
    return row.classList.contains('target') === (n === target) && row.classList.contains('match') === (n === match);
  };

  /** Draws the lines in view: rows that stay are kept (and the keyboard's focus with them). */
  const draw = () => {
    frame = 0;
    space.style.height = `${height()}px`;
    if (toTheEnd) {
      toTheEnd = false;
      setScroll(height());
    }
    if (!count) {
      rows.replaceChildren();
      return;
    }
    const first = Math.min(firstInView(), count);
    const from = Math.max(1, first - OVERSCAN);
    const to = Math.min(count, first + inView() + OVERSCAN);
    const top = scaled() ? box.scrollTop - (first - from) * LINE : (from - 1) * LINE;
    rows.style.transform = `translateY(${Math.max(0, top)}px)`;
    for (const row of [...rows.children]) {
      const n = rowLine(row);
      if (n < from || n > to) row.remove();
      else if (!current(row, n)) row.replaceWith(makeRow(n));
    }
    // What stays is one run of lines inside from..to: draw the lines before it and after it.
    const kept = rows.firstElementChild ? [rowLine(rows.firstElementChild), rowLine(rows.lastElementChild)] : [to + 1, to];
    const make = (low, high) => {
      const made = [];
      for (let n = low; n <= high; n++) made.push(makeRow(n));
      return made;
    };
    rows.prepend(...make(from, kept[0] - 1));
    rows.append(...make(kept[1] + 1, to));
    // Fetch what is missing in view, a page at a time.
    for (let index = pageOf(from); index <= pageOf(to); index++) {
      const page = pages.get(index);
      const last = Math.min(count, (index + 1) * PAGE);
      const missing = !page || page.lines.filter(Boolean).length < last - index * PAGE;
      if (missing && (!page || page.seenAt < count)) fetchPage(index);
    }
    trim(from, to);
  };
  const redraw = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  const toEnd = () => {
    toTheEnd = true;
    redraw();
  };

  box.addEventListener('scroll', () => {
    if (ownScroll) {
      ownScroll = false;
    } else if (started) {
      follow.checked = atEnd();
    }
    redraw();
  });
  follow.addEventListener('change', () => {
    if (follow.checked) toEnd();
  });

  const subscribe = () => {
    if (stop || ended) return;
    stop = view.subscribe(
      `subscription($job: ID!, $after: Int) { jobLog(jobId: $job, after: $after) { ${LINES} } }`,
      () => ({ job: job.id, after: live }),
      {
        next: ({ jobLog: line }) => {
          if (line.offset <= live) return;
          live = line.offset;
          store(line);
          if (line.offset > count) count = line.offset;
          if (follow.checked) toEnd();
          else redraw();
        },
        error: (error) => {
          stop = null;
          replace(state, errorBox(error));
        },
        complete: () => {
          stop = null;
          ended = true;
          replace(state, count ? 'End of the log.' : 'No output.');
        },
      },
    );
  };

  /** Centres line `n` in the view. */
  const centre = (n) => {
    follow.checked = false;
    setScroll(scrollFor(Math.max(1, n - Math.floor(inView() / 2))));
    draw();
  };

  return {
    node: box,
    /** Starts the view at the end of the log (or at a linked line); again after an error. */
    async open() {
      if (started) {
        subscribe();
        return;
      }
      // Opened twice before the first answer (a details element announces its first opening):
      // one start.
      opening ??= gql('query($job: ID!) { job(id: $job) { logLines } }', { job: job.id }).finally(() => {
        opening = null;
      });
      let data;
      try {
        data = await opening;
      } catch (error) {
        replace(state, errorBox(error));
        return;
      }
      if (started) return;
      count = data.job?.logLines ?? 0;
      started = true;
      live = count;
      if (target) {
        centre(target);
        box.scrollIntoView({ block: 'center' });
      } else if (follow.checked) toEnd();
      else draw();
      subscribe();
    },
    /** Marks line `n` and brings it into view (a linked line). */
    show(n) {
      target = n;
      if (started) centre(n);
    },
    /** Finds `text` after the current match (before it with `back`), going round the log once. */
    async find(text, back) {
      const from = match ?? (back ? firstInView() : firstInView() - 1);
      const search = (args) =>
        gql(
          `query($job: ID!, $text: String!, $after: Int, $before: Int, $first: Int, $last: Int) {
            job(id: $job) { logSearch(text: $text, after: $after, before: $before, first: $first, last: $last) { offset } } }`,
          { job: job.id, text, ...args },
        ).then((data) => data.job?.logSearch?.[0]?.offset ?? null);
      let found = await search(back ? { before: from, last: 1 } : { after: from, first: 1 });
      const wrapped = found === null;
      if (wrapped) found = await search(back ? { last: 1 } : { after: 0, first: 1 });
      if (found === null) {
        match = null;
        draw();
        return { line: null, wrapped: false };
      }
      match = found;
      centre(found);
      return { line: found, wrapped };
    },
    /** Forgets the current match: the next search starts from the lines in view. */
    forgetMatch() {
      if (match === null) return;
      match = null;
      draw();
    },
    /** Lines stored so far, as far as the view knows. */
    get count() {
      return count;
    },
  };
}
