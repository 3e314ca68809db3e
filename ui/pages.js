// The sign-in form and the pages of orgs, one org and one repo.

import { ApiError, gql, mutate, session } from './api.js';
import { duration, errorBox, finished, h, link, more, replace, route, statusBadge, time } from './dom.js';
import { orgOwnerSections, repoOwnerSections } from './owners.js';

/** The sign-in form; `done()` once a token the API accepts is kept for the tab. */
export function signIn(main, done) {
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-help',
  });
  const problem = h('div', { class: 'problem', 'aria-live': 'assertive' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card signin', id: 'sign-in' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'muted' }, 'Kept in this tab only, until you sign out or close it.'),
    button,
    problem,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    button.disabled = true;
    replace(problem);
    try {
      await gql('{ orgs(first: 1) { edges { node { id } } } }', {}, token);
      session.set(token);
      done();
    } catch (error) {
      replace(problem, errorBox(error));
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
}

/** `#/`: the orgs the token can read, a hundred at a time. */
export async function orgsPage(view) {
  const ORGS = 'orgs(first: 100, after: $after) { edges { node { id name slug } } pageInfo { hasNextPage endCursor } }';
  const list = h('ul', { class: 'list' });
  const problem = h('div', {});
  const add = (orgs) =>
    list.append(...orgs.edges.map(({ node: org }) => h('li', {}, link(['orgs', org.slug], org.name), ' ', h('span', { class: 'muted' }, org.slug))));
  const next = more(async (after) => {
    const page = (await gql(`query($after: String) { ${ORGS} }`, { after })).orgs;
    add(page);
    return page.pageInfo;
  }, (error) => replace(problem, errorBox(error)));
  const data = await gql(`query($after: String) { ${ORGS} }`, { after: null });
  view.crumbs([]);
  add(data.orgs);
  next.from(data.orgs.pageInfo);
  view.show(
    h('h1', {}, 'Orgs'),
    data.orgs.edges.length === 0 ? h('p', { class: 'muted' }, 'No orgs this token can read.') : list,
    next.button,
    problem,
  );
}

const LATEST = 'id status queuedAt repo { id }';

/** `#/orgs/<slug>`: the org's repos with their latest build, kept current by `buildsUpdated`. */
export async function orgPage(view, slug) {
  const REPOS = `repos(first: 100, after: $after) { edges { node { id name gitUrl archived
         builds(first: 1) { edges { node { ${LATEST} } } } } } pageInfo { hasNextPage endCursor } }`;
  const data = await gql(`query($slug: String!, $after: String) { org(slug: $slug) { id name slug myRole ${REPOS} } }`, {
    slug,
    after: null,
  });
  if (!data.org) throw new ApiError('NOT_FOUND', `no org ${slug} that this token can read`);
  const org = data.org;
  view.crumbs([[org.name, ['orgs', org.slug]]]);
  const latest = new Map();
  const cells = new Map();
  // A repo's cell is drawn again only when its latest build or that build's status changed, so
  // a live update does not take the keyboard's focus out of its link.
  const showLatest = (repoId) => {
    const build = latest.get(repoId);
    const cell = cells.get(repoId);
    const key = build ? `${build.id} ${build.status}` : '';
    if (cell.dataset.shown === key) return;
    cell.dataset.shown = key;
    replace(cell, build ? link(['builds', build.id], statusBadge(build.status)) : h('span', { class: 'muted' }, 'no builds'));
  };
  const newer = (repoId, build) => {
    const current = latest.get(repoId);
    if (!current || current.id === build.id || current.queuedAt <= build.queuedAt) {
      latest.set(repoId, build);
      showLatest(repoId);
    }
  };
  const list = h('ul', { class: 'list' });
  const problem = h('div', {});
  const add = (repos) => {
    for (const { node: repo } of repos.edges) {
      if (cells.has(repo.id)) continue;
      cells.set(repo.id, h('span', { class: 'latest' }));
      latest.set(repo.id, repo.builds.edges[0]?.node);
      showLatest(repo.id);
      list.append(
        h(
          'li',
          { 'data-repo': repo.id },
          link(['repos', repo.id], repo.name),
          repo.archived ? h('span', { class: 'muted' }, ' (archived)') : null,
          ' ',
          cells.get(repo.id),
          h('div', { class: 'muted small' }, repo.gitUrl),
        ),
      );
    }
  };
  const readPage = async (after) => (await gql(`query($id: ID!, $after: String) { org(id: $id) { ${REPOS} } }`, { id: org.id, after })).org.repos;
  const next = more(async (after) => {
    const page = await readPage(after);
    add(page);
    return page.pageInfo;
  }, (error) => replace(problem, errorBox(error)));
  add(org.repos);
  next.from(org.repos.pageInfo);
  view.show(
    h('h1', {}, org.name),
    org.repos.edges.length === 0 ? h('p', { class: 'muted' }, 'No repos yet.') : list,
    next.button,
    problem,
    org.myRole === 'owner' ? orgOwnerSections(org.id) : null,
  );
  view.subscribe(`subscription($org: ID!) { buildsUpdated(orgId: $org) { ${LATEST} } }`, () => ({ org: org.id }), {
    next: ({ buildsUpdated: build }) => {
      const repoId = build.repo?.id;
      if (cells.has(repoId)) newer(repoId, build);
    },
    // Builds that changed while the connection was down were not sent: read the latest again.
    restarted: async () => {
      try {
        let after = null;
        let seen = 0;
        do {
          const page = await readPage(after);
          for (const { node: repo } of page.edges) {
            const build = repo.builds.edges[0]?.node;
            if (build && cells.has(repo.id)) newer(repo.id, build);
          }
          seen += page.edges.length;
          after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
        } while (after && seen < cells.size);
      } catch (error) {
        replace(problem, errorBox(error));
      }
    },
  });
}

const BUILD_ROW = 'id status source branch tag commit queuedAt startedAt finishedAt jobs { jobId status }';

/** A random idempotency key: a form sent twice queues one build. */
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** `NAME=value` lines as build parameters; throws on a line without `=`. */
function parseParams(text) {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const at = line.indexOf('=');
      if (at < 1) throw new ApiError('BAD_USER_INPUT', `a parameter is NAME=value, not ${JSON.stringify(line)}`);
      return { name: line.slice(0, at), value: line.slice(at + 1) };
    });
}

/** The form that triggers a build of `repo`; `onQueued(id)` with the new build's id. */
function triggerForm(repo, onQueued) {
  const field = (id, label, attrs = {}) => [
    h('label', { for: id }, label),
    h('input', { id, name: id, autocomplete: 'off', spellcheck: 'false', ...attrs }),
  ];
  const problem = h('div', { class: 'problem', 'aria-live': 'assertive' });
  const button = h('button', { type: 'submit' }, 'Trigger build');
  const form = h(
    'form',
    { class: 'card trigger', id: 'trigger' },
    h('h2', {}, 'Trigger a build'),
    h(
      'div',
      { class: 'fields' },
      field('trigger-branch', 'Branch', { placeholder: repo.mainBranch }),
      field('trigger-tag', 'Tag'),
      field('trigger-commit', 'Commit'),
    ),
    h('label', { for: 'trigger-params' }, 'Parameters (NAME=value, one a line)'),
    h('textarea', { id: 'trigger-params', name: 'params', rows: 2, spellcheck: 'false' }),
    button,
    problem,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim() || null;
    replace(problem);
    button.disabled = true;
    try {
      const id = await mutate('triggerBuild', 'TriggerBuildInput', {
        repoId: repo.id,
        branch: value('trigger-branch'),
        tag: value('trigger-tag'),
        commit: value('trigger-commit'),
        params: parseParams(form.querySelector('#trigger-params').value),
        idempotencyKey: idempotencyKey(),
      });
      replace(problem, h('p', { class: 'ok', role: 'status' }, 'Queued ', link(['builds', id], 'the build'), '.'));
      await onQueued(id);
    } catch (error) {
      replace(problem, errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/** A link straight to the log of a build's first failed job, if one failed. */
function failedJob(build) {
  const failed = build.jobs?.find((j) => j.status === 'FAILED');
  return failed
    ? h('a', { class: 'failed-job', href: route(['builds', build.id, failed.jobId]) }, `${failed.jobId} failed`)
    : null;
}

/** `#/repos/<id>`: the repo's builds, newest first, kept current by `buildsUpdated`. */
export async function repoPage(view, id) {
  const data = await gql(
    `query($id: ID!) { repo(id: $id) { id name gitUrl mainBranch archived org { name slug myRole }
       builds(first: 50) { edges { node { ${BUILD_ROW} } } pageInfo { hasNextPage endCursor } } } }`,
    { id },
  );
  if (!data.repo) throw new ApiError('NOT_FOUND', 'no such repo that this token can read');
  const repo = data.repo;
  view.crumbs([
    [repo.org?.name ?? 'org', ['orgs', repo.org?.slug ?? '']],
    [repo.name, ['repos', repo.id]],
  ]);
  const builds = new Map(repo.builds.edges.map((e) => [e.node.id, e.node]));
  const list = h('ol', { class: 'builds', 'aria-label': 'Builds' });
  // One row per build, made once and changed in place: a live update neither takes the keyboard's
  // focus out of a row's link nor replaces the link a click is aimed at.
  const rows = new Map();
  const row = (b) => {
    let entry = rows.get(b.id);
    if (!entry) {
      const parts = {
        badge: h('span', {}),
        ref: link(['builds', b.id], ''),
        commit: h('code', { class: 'commit' }),
        failed: h('span', {}),
        when: h('span', { class: 'muted small when' }),
      };
      entry = { parts, node: h('li', { 'data-build': b.id }, parts.badge, ' ', parts.ref, ' ', parts.commit, parts.failed, parts.when) };
      rows.set(b.id, entry);
    }
    const { parts } = entry;
    const set = (node, key, make) => {
      // Drawn again only when what it shows changed.
      if (node.dataset.shown !== key) {
        node.dataset.shown = key;
        replace(node, make());
      }
    };
    set(parts.badge, b.status, () => statusBadge(b.status));
    parts.ref.textContent = b.tag ? `tag ${b.tag}` : (b.branch ?? 'build');
    parts.commit.textContent = b.commit ? b.commit.slice(0, 12) : '';
    const failed = b.jobs?.find((j) => j.status === 'FAILED')?.jobId ?? '';
    set(parts.failed, failed, () => failedJob(b));
    replace(
      parts.when,
      b.source.toLowerCase(),
      ' · ',
      time(b.queuedAt),
      b.startedAt ? ` · ${duration(b.startedAt, b.finishedAt)}${finished(b.status) ? '' : ' so far'}` : '',
    );
    return entry.node;
  };
  const draw = () => {
    const nodes = [...builds.values()]
      .sort((a, b) => (a.queuedAt < b.queuedAt ? 1 : a.queuedAt > b.queuedAt ? -1 : 0))
      .map(row);
    const same = nodes.length === list.children.length && nodes.every((n, i) => list.children[i] === n);
    if (!same) replace(list, nodes.length ? nodes : h('li', { class: 'muted' }, 'No builds yet.'));
  };
  const upsert = (build) => {
    const known = builds.get(build.id);
    // A state already superseded (the query's answer arriving after the subscription's) is kept out.
    if (known && finished(known.status) && !finished(build.status)) return;
    builds.set(build.id, build);
    draw();
  };
  draw();
  const problem = h('div', {});
  const readPage = async (after) =>
    (await gql(`query($id: ID!, $after: String) { repo(id: $id) { builds(first: 50, after: $after) { edges { node { ${BUILD_ROW} } } pageInfo { hasNextPage endCursor } } } }`, { id, after }))
      .repo.builds;
  const older = more(async (after) => {
    const page = await readPage(after);
    page.edges.forEach((e) => upsert(e.node));
    return page.pageInfo;
  }, (error) => replace(problem, errorBox(error)));
  older.from(repo.builds.pageInfo);
  view.show(
    h('h1', {}, repo.name),
    h('p', { class: 'muted small' }, repo.gitUrl, ' · main branch ', repo.mainBranch),
    repo.archived
      ? h('p', { class: 'muted' }, 'Archived: it takes no more builds.')
      : repo.org?.myRole === 'viewer'
        ? h('p', { class: 'muted', id: 'viewer-note' }, 'You view this org: triggering builds takes a member.')
        : triggerForm(repo, queued),
    h('h2', {}, 'Builds'),
    list,
    older.button,
    problem,
    repo.org?.myRole === 'owner' ? repoOwnerSections(repo.id) : null,
  );
  async function queued(buildId) {
    // Read-your-writes: the build is there as soon as the mutation has returned.
    const found = await gql(`query($id: ID!) { build(id: $id) { ${BUILD_ROW} } }`, { id: buildId });
    if (found.build && !builds.has(buildId)) upsert(found.build);
  }
  view.subscribe(
    `subscription($repo: ID!) { buildsUpdated(repoId: $repo) { ${BUILD_ROW} } }`,
    () => ({ repo: repo.id }),
    {
      next: ({ buildsUpdated: build }) => upsert(build),
      // Builds that changed while the connection was down were not sent: read the newest again.
      restarted: () =>
        readPage(null)
          .then((page) => page.edges.forEach((e) => upsert(e.node)))
          .catch((error) => replace(problem, errorBox(error))),
    },
  );
}

