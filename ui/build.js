// `#/builds/<id>[/<job>/<line>]`: a build with its jobs and their logs, all live.

import { ApiError, gql, mutate } from './api.js';
import { jobGraph } from './graph.js';
import { logView } from './logview.js';
import { duration, errorBox, finished, h, link, replace, route, statusBadge, time } from './dom.js';

const JOB = 'id jobId status dependencies message queuedAt startedAt finishedAt logPath';
const BUILD = `id status source branch tag commit message runner cancelRequested queuedAt startedAt finishedAt
  params { name value } jobCounts { total succeeded failed } retryOf { id } retriedBy { id }
  artifacts { id jobId size sha256 savedAt }
  jobs { ${JOB} }`;

/** The build page; `focus` is `{ job, line }` from the route, or null. */
export async function buildPage(view, id, focus) {
  const data = await gql(`query($id: ID!) { build(id: $id) { ${BUILD} repo { id name org { name slug myRole } } } }`, { id });
  if (!data.build) throw new ApiError('NOT_FOUND', 'no such build that this token can read');
  const repo = data.build.repo;
  view.crumbs([
    [repo?.org?.name ?? 'org', ['orgs', repo?.org?.slug ?? '']],
    [repo?.name ?? 'repo', ['repos', repo?.id ?? '']],
    ['build', ['builds', id]],
  ]);
  // The build as it is now (kept current by `buildUpdated`), and as it was at an event of its
  // history when the user went back in time (null: now).
  let latest = data.build;
  let past = null;
  // What the caller may do decides which buttons there are; the API checks every mutation anyway.
  const mayAct = repo?.org?.myRole !== 'viewer';
  const graph = jobGraph(id);
  const summary = h('section', { class: 'card summary', 'aria-label': 'Build' });
  // Made once and shown or hidden, so that a live update does not take the keyboard's focus away.
  const retry = h('button', { type: 'button', id: 'retry' }, 'Retry');
  const cancel = h('button', { type: 'button', id: 'cancel' }, 'Cancel');
  const actions = h('div', { class: 'actions' }, cancel, retry);
  const problem = h('div', { class: 'problem', 'aria-live': 'assertive' });
  const jobsList = h('div', { class: 'jobs' });
  const jobs = new Map();
  let target = focus;

  const act = async (run) => {
    replace(problem);
    try {
      await run();
    } catch (error) {
      replace(problem, errorBox(error));
    }
  };
  retry.addEventListener('click', () =>
    act(async () => {
      const next = await mutate('retryBuild', 'BuildInput', { id });
      location.hash = route(['builds', next]);
    }),
  );
  cancel.addEventListener('click', () => act(() => mutate('cancelBuild', 'BuildInput', { id })));
  const facts = h('dl', { class: 'facts' });
  const heading = h('h1', {});
  summary.append(heading, facts, actions, problem);
  const drawSummary = () => {
    const build = past?.build ?? latest;
    const ref = build.tag ? `tag ${build.tag}` : build.branch ? `branch ${build.branch}` : 'main branch';
    replace(heading, 'Build ', statusBadge(build.status), past ? h('span', { class: 'as-of small' }, ' as of ', time(past.at)) : null);
    replace(
      facts,
      h('dt', {}, 'Ref'),
      h('dd', {}, ref, build.commit ? [' · ', h('code', {}, build.commit.slice(0, 12))] : null),
      h('dt', {}, 'Source'),
      h('dd', {}, build.source.toLowerCase(), build.runner ? ` · runner ${build.runner}` : ''),
      h('dt', {}, 'Queued'),
      h('dd', {}, time(build.queuedAt)),
      h('dt', {}, 'Ran'),
      h(
        'dd',
        {},
        build.startedAt ? [time(build.startedAt), ' · ', duration(build.startedAt, build.finishedAt)] : 'not yet',
      ),
      h('dt', {}, 'Jobs'),
      h(
        'dd',
        {},
        `${build.jobCounts.succeeded} of ${build.jobCounts.total} succeeded`,
        build.jobCounts.failed ? `, ${build.jobCounts.failed} failed` : '',
      ),
      build.params.length ? [h('dt', {}, 'Parameters'), h('dd', {}, build.params.map((p) => `${p.name}=${p.value} `))] : null,
      build.message ? [h('dt', {}, 'Message'), h('dd', { class: 'message' }, build.message)] : null,
      build.retryOf ? [h('dt', {}, 'Retry of'), h('dd', {}, link(['builds', build.retryOf.id], 'the earlier build'))] : null,
      build.retriedBy ? [h('dt', {}, 'Retried by'), h('dd', {}, link(['builds', build.retriedBy.id], 'a later build'))] : null,
    );
    // Actions are on the build as it is now: none while looking at the past.
    retry.hidden = !mayAct || past !== null || !finished(build.status);
    cancel.hidden = !mayAct || past !== null || finished(build.status);
    cancel.disabled = build.cancelRequested;
    cancel.textContent = build.cancelRequested ? 'Canceling…' : 'Cancel';
  };

  const drawJobs = () => {
    const build = past?.build ?? latest;
    for (const job of build.jobs) {
      let entry = jobs.get(job.jobId);
      if (!entry) {
        entry = jobEntry(view, id, job, () => target);
        jobs.set(job.jobId, entry);
      }
      entry.update(job, act, mayAct && past === null);
    }
    graph.update(build.jobs);
    const nodes = build.jobs.map((j) => jobs.get(j.jobId).node);
    // Moving a node takes the focus out of it: the list is only redrawn when it changed.
    const same = nodes.length === jobsList.children.length && nodes.every((n, i) => jobsList.children[i] === n);
    if (!same) replace(jobsList, nodes.length ? nodes : h('p', { class: 'muted' }, 'No jobs yet.'));
  };

  const artifacts = artifactList(id, (error) => replace(problem, errorBox(error)));
  const redraw = () => {
    drawSummary();
    drawJobs();
    artifacts.update((past?.build ?? latest).artifacts);
  };
  const history = timeline(id, (shown) => {
    past = shown;
    redraw();
  });
  redraw();
  view.show(summary, history.node, h('h2', {}, 'Jobs'), graph.node, jobsList, artifacts.node);
  jobs.get(target?.job)?.reveal();
  view.subscribe(`subscription($id: ID!) { buildUpdated(buildId: $id) { ${BUILD} } }`, () => ({ id }), {
    next: ({ buildUpdated }) => {
      latest = buildUpdated;
      redraw();
      history.grew();
    },
    error: (error) => replace(problem, errorBox(error)),
  });
  return {
    /** Another line of the same build was linked. */
    focus(next) {
      target = next;
      jobs.get(next?.job)?.reveal();
    },
  };
}

/** A size in bytes for people: `1.5 MB`. */
function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Saves what `path` serves through a plain link, so the browser writes it to disk as it
 * arrives: `link()` gives the path with a short-lived ticket (the token never goes in a URL).
 */
async function downloadFile(link, name) {
  const save = h('a', { href: await link(), download: name, hidden: true });
  document.body.append(save);
  save.click();
  save.remove();
}

/** The build's artifacts, each with a download button; drawn again only when the list changes. */
function artifactList(buildId, failed) {
  const body = h('div', {});
  const node = h('section', { class: 'card artifacts', 'aria-label': 'Artifacts' }, h('h2', {}, 'Artifacts'), body);
  let shown = null;
  return {
    node,
    update(artifacts) {
      const key = artifacts.map((a) => a.id).join('\n');
      if (key === shown) return;
      shown = key;
      if (!artifacts.length) {
        replace(body, h('p', { class: 'muted' }, 'No artifacts.'));
        return;
      }
      const link = (artifactId) => async () => {
        const data = await gql('query($id: ID!) { build(id: $id) { artifacts { id downloadLink } } }', { id: buildId });
        const found = data.build?.artifacts.find((a) => a.id === artifactId);
        if (!found) throw new ApiError('NOT_FOUND', `no artifact ${artifactId}`);
        return found.downloadLink;
      };
      const rows = artifacts.map((a) =>
        h(
          'tr',
          { 'data-artifact': a.id },
          h('td', {}, a.id),
          h('td', {}, a.jobId),
          h('td', {}, size(a.size)),
          h('td', {}, h('code', { title: a.sha256 }, a.sha256.slice(0, 12))),
          h('td', {}, time(a.savedAt)),
          h(
            'td',
            {},
            h('button', { type: 'button', class: 'download', onclick: () => downloadFile(link(a.id), `${a.id}.tgz`).catch(failed) }, 'Download'),
          ),
        ),
      );
      const head = h('tr', {}, ['Artifact', 'Job', 'Size', 'SHA-256', 'Saved', ''].map((t) => h('th', { scope: 'col' }, t)));
      replace(body, h('div', { class: 'table' }, h('table', {}, h('thead', {}, head), h('tbody', {}, rows))));
    },
  };
}

/** One job: its facts, an unblock button while it waits, and its log. */
function jobEntry(view, buildId, first, target) {
  const status = h('span', {});
  const facts = h('span', { class: 'muted small' });
  const deps = h('span', { class: 'small' });
  const buttons = h('span', {});
  const state = h('p', { class: 'muted small' });
  const download = h('button', { type: 'button', class: 'download' }, 'Download');
  const followBox = h('input', { type: 'checkbox', id: `follow-${first.jobId}`, class: 'follow', checked: true });
  const log = logView(view, buildId, first, followBox, state);
  // Each line's time is always in its number's title; the box shows them as a column.
  const timesBox = h('input', { type: 'checkbox', id: `times-${first.jobId}`, class: 'times' });
  timesBox.addEventListener('change', () => log.node.classList.toggle('with-times', timesBox.checked));
  // Search, on the server: Enter finds the next match, Shift+Enter the one before.
  const findText = h('input', { type: 'search', class: 'find', id: `find-${first.jobId}`, placeholder: 'Find in log', 'aria-label': `Find in the log of ${first.jobId}` });
  const found = h('span', { class: 'found small', 'aria-live': 'polite' });
  const find = async (back) => {
    const text = findText.value;
    if (!text) return;
    replace(found, 'Searching…');
    try {
      const result = await log.find(text, back);
      replace(found, result.line === null ? 'Not found.' : `Line ${result.line}${result.wrapped ? (back ? ' (from the end)' : ' (from the start)') : ''}`);
    } catch (error) {
      replace(found, errorBox(error));
    }
  };
  findText.addEventListener('input', () => {
    log.forgetMatch();
    replace(found);
  });
  findText.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    event.preventDefault();
    find(event.shiftKey);
  });
  const tools = h(
    'div',
    { class: 'tools' },
    h('label', { for: `follow-${first.jobId}` }, followBox, ' Follow the end'),
    h('label', { for: `times-${first.jobId}` }, timesBox, ' Times'),
    download,
    h(
      'span',
      { class: 'search' },
      findText,
      h('button', { type: 'button', class: 'find-prev', onclick: () => find(true) }, 'Previous'),
      h('button', { type: 'button', class: 'find-next', onclick: () => find(false) }, 'Next'),
      found,
    ),
  );
  const details = h('details', { open: true }, h('summary', {}, 'Log'), tools, log.node, state);
  // A plain link with a short-lived ticket (`logDownloadLink`): the browser saves the log to
  // disk as it arrives, however large, and the token never goes into a URL.
  const logLink = async () => (await gql('query($job: ID!) { job(id: $job) { logDownloadLink } }', { job: first.id })).job.logDownloadLink;
  download.addEventListener('click', () => downloadFile(logLink, `${first.jobId}.log`).catch((error) => replace(state, errorBox(error))));
  const node = h(
    'section',
    { class: 'card job', id: `job-${first.jobId}`, 'data-job': first.jobId },
    h('h3', { tabindex: '-1' }, status, ' ', first.jobId, ' ', buttons),
    h('p', {}, deps, ' ', facts),
    details,
  );

  const reveal = () => {
    const wanted = target();
    if (!wanted || wanted.job !== first.jobId) return;
    if (!wanted.line) {
      node.scrollIntoView({ block: 'start' });
      node.querySelector('h3').focus();
      return;
    }
    details.open = true;
    log.show(Number(wanted.line));
    log.node.scrollIntoView({ block: 'center' });
  };
  details.addEventListener('toggle', () => {
    if (details.open) log.open();
  });
  log.open();

  return {
    node,
    reveal,
    update(job, act, canAct) {
      replace(status, statusBadge(job.status));
      replace(
        deps,
        job.dependencies.length ? ['after ', job.dependencies.map((d, i) => [i ? ', ' : '', h('a', { href: route(['builds', buildId, d]), class: 'dep' }, d)])] : 'no dependencies',
      );
      replace(
        facts,
        job.startedAt ? ` · ${duration(job.startedAt, job.finishedAt)}` : '',
        job.message ? ` · ${job.message}` : '',
      );
      replace(
        buttons,
        job.status === 'BLOCKED' && canAct
          ? h('button', { type: 'button', class: 'unblock', onclick: () => act(() => mutate('unblockJob', 'UnblockJobInput', { id: job.id })) }, 'Approve')
          : null,
      );
    },
  };
}

/**
 * The build's history (`history`) as a timeline: a slider and a list of its events. Choosing an
 * event shows the build as it was right after it (`build(asOf: {cursor})`), handed to
 * `show(past)` as `{ build, at }`; the last event, or "Now", hands `null` (the live build).
 * Loaded when first opened; `grew()` reloads it while open, as the build changes.
 */
function timeline(id, show) {
  const slider = h('input', { type: 'range', id: 'travel', min: 0, max: 0, value: 0, 'aria-label': 'Event of the build' });
  const where = h('output', { for: 'travel', id: 'travel-at', class: 'small' });
  const now = h('button', { type: 'button', id: 'travel-now' }, 'Now');
  const list = h('ol', { class: 'events' });
  const problem = h('div', { 'aria-live': 'assertive' });
  const details = h(
    'details',
    { id: 'history' },
    h('summary', {}, 'History'),
    h('p', { class: 'muted small' }, 'Move along the events to see the build as it was after each (logs show all output so far).'),
    h('div', { class: 'travel' }, slider, now),
    where,
    problem,
    list,
  );
  let events = [];
  // The chosen event's index; null: now, following the end.
  let chosen = null;
  let asked = 0;

  const label = (e) => [e.type, e.data?.job_id ? ` ${e.data.job_id}` : ''].join('');
  const mark = () => {
    const at = chosen ?? events.length - 1;
    slider.max = String(Math.max(0, events.length - 1));
    slider.value = String(Math.max(0, at));
    for (const item of list.children) {
      const here = Number(item.dataset.index) === at;
      item.classList.toggle('at', here);
      if (here) item.setAttribute('aria-current', 'step');
      else item.removeAttribute('aria-current');
    }
    const event = events[at];
    replace(where, event ? [`${at + 1} of ${events.length}: ${label(event)} · `, time(event.recordedAt), chosen === null ? ' (now)' : ''] : '');
    now.disabled = chosen === null;
  };
  const choose = async (index) => {
    const ask = ++asked;
    replace(problem);
    chosen = index === null || index >= events.length - 1 ? null : index;
    mark();
    if (chosen === null) {
      show(null);
      return;
    }
    const event = events[chosen];
    try {
      const data = await gql(`query($id: ID!, $at: String!) { build(id: $id, asOf: {cursor: $at}) { ${BUILD} } }`, {
        id,
        at: event.cursor,
      });
      if (ask === asked) show({ build: data.build, at: event.recordedAt });
    } catch (error) {
      if (ask === asked) replace(problem, errorBox(error));
    }
  };
  const load = async () => {
    try {
      const found = [];
      let after = null;
      // A build's history is short (a few events per job); pages of 100 (the most a page holds) all the same.
      for (;;) {
        const data = await gql(
          `query($id: String!, $after: String) { history(streamId: $id, first: 100, after: $after) {
             edges { node { cursor type recordedAt actor data } } pageInfo { hasNextPage endCursor } } }`,
          { id, after },
        );
        found.push(...data.history.edges.map((e) => e.node));
        if (!data.history.pageInfo.hasNextPage) break;
        after = data.history.pageInfo.endCursor;
      }
      events = found;
      replace(
        list,
        events.map((e, i) =>
          h(
            'li',
            { 'data-index': i, 'data-type': e.type },
            h('button', { type: 'button', class: 'event', onclick: () => choose(i) }, label(e)),
            h('span', { class: 'muted small' }, ' ', time(e.recordedAt), ` · ${e.actor}`),
          ),
        ),
      );
      mark();
    } catch (error) {
      replace(problem, errorBox(error));
    }
  };
  slider.addEventListener('input', () => choose(Number(slider.value)));
  now.addEventListener('click', () => choose(null));
  details.addEventListener('toggle', () => {
    if (details.open) load();
  });
  return {
    node: h('section', { class: 'card history', 'aria-label': 'History' }, details),
    grew() {
      if (details.open) load();
    },
  };
}
