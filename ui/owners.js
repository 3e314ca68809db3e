// What an org's owners see besides builds: its members, tokens, parameter sets, ssh keys and
// audit log on the org page; a repo's webhooks and schedules on the repo page. Names and facts
// only: no secret value is ever asked for (the API has none to give).

import { gql } from './api.js';
import { errorBox, h, replace, time } from './dom.js';

/** A titled card whose body `fill(body)` draws; an error of the API is shown in its place. */
function card(id, title, fill) {
  const body = h('div', {});
  const node = h('section', { class: 'card owners', id, 'aria-label': title }, h('h2', {}, title), body);
  fill(body).catch((error) => replace(body, errorBox(error)));
  return node;
}

/** A row of cells. */
const tr = (cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell)));

/** A table with `headings` around `tbody` (which may grow later). */
function framed(headings, tbody) {
  const head = h('thead', {}, h('tr', {}, headings.map((title) => h('th', { scope: 'col' }, title))));
  return h('div', { class: 'table' }, h('table', {}, head, tbody));
}

/** A table of `rows` (arrays of cells) under `headings`, or `empty` when there are none. */
function table(headings, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return framed(headings, h('tbody', {}, rows.map(tr)));
}

/** A label filter for people: `team=web, env=prod or team=ops`; no rules: every repo. */
const filter = (rules) =>
  rules.length ? rules.map((r) => r.labels.map((l) => `${l.name}=${l.value}`).join(', ')).join(' or ') : 'every repo';

/** The org page's sections for owners. */
export function orgOwnerSections(orgId) {
  const members = card('members', 'Members', async (body) => {
    const data = await gql('query($id: ID!) { org(id: $id) { members { userId name role } } }', { id: orgId });
    replace(body, table(['Name', 'Role'], data.org.members.map((m) => [m.name, m.role]), 'No members.'));
  });
  const tokens = card('tokens', 'Org tokens', async (body) => {
    const data = await gql('query($id: ID!) { org(id: $id) { apiTokens { id name role expiresAt } } }', {
      id: orgId,
    });
    replace(
      body,
      table(
        ['Name', 'Role', 'Expires'],
        data.org.apiTokens.map((t) => [t.name, t.role ?? '', time(t.expiresAt)]),
        'No org tokens.',
      ),
      h('p', { class: 'muted small' }, 'A token is shown once, when it is made; only its name and role are kept in view.'),
    );
  });
  const secrets = card('secrets', 'Parameter sets and ssh keys', async (body) => {
    const data = await gql(
      `query($id: ID!) { org(id: $id) {
         paramSets { id name parameterNames protected filter { labels { name value } } }
         sshKeys { id description protected filter { labels { name value } } } } }`,
      { id: orgId },
    );
    replace(
      body,
      h('h3', {}, 'Parameter sets'),
      table(
        ['Name', 'Parameters', 'For', 'Protected'],
        data.org.paramSets.map((p) => [p.name, p.parameterNames.join(', '), filter(p.filter), p.protected ? 'yes' : 'no']),
        'No parameter sets.',
      ),
      h('h3', {}, 'SSH keys'),
      table(
        ['Description', 'For', 'Protected'],
        data.org.sshKeys.map((k) => [k.description, filter(k.filter), k.protected ? 'yes' : 'no']),
        'No ssh keys.',
      ),
      h('p', { class: 'muted small' }, 'Values and private keys are never shown.'),
    );
  });
  const audit = card('audit', 'Audit log', async (body) => {
    const list = h('tbody', {});
    const more = h('button', { type: 'button', class: 'more' }, 'Show more');
    const problem = h('div', {});
    let after = null;
    const page = async () => {
      const data = await gql(
        `query($id: ID!, $after: String) { auditLog(orgId: $id, first: 50, after: $after) {
           edges { node { type streamId actor recordedAt } } pageInfo { hasNextPage endCursor } } }`,
        { id: orgId, after },
      );
      for (const { node: e } of data.auditLog.edges) {
        list.append(tr([time(e.recordedAt), e.actor, e.type, e.streamId]));
      }
      after = data.auditLog.pageInfo.endCursor;
      more.hidden = !data.auditLog.pageInfo.hasNextPage;
    };
    more.addEventListener('click', () => page().catch((error) => replace(problem, errorBox(error))));
    await page();
    replace(
      body,
      h('p', { class: 'muted small' }, 'Every event of the org, oldest first.'),
      framed(['When', 'Who', 'What', 'Stream'], list),
      more,
      problem,
    );
  });
  return [members, tokens, secrets, audit];
}

/** The repo page's sections for owners. */
export function repoOwnerSections(repoId) {
  return [
    card('triggers', 'Webhooks and schedules', async (body) => {
      const data = await gql(
        `query($id: ID!) { repo(id: $id) { webhooks { id host path createdAt rotatedAt }
           schedules { id cron nextRunAt createdAt } } }`,
        { id: repoId },
      );
      replace(
        body,
        h('h3', {}, 'Webhooks'),
        table(
          ['Host', 'Path', 'Made', 'Secret rotated'],
          data.repo.webhooks.map((w) => [w.host ?? 'any', h('code', {}, w.path), time(w.createdAt), w.rotatedAt ? time(w.rotatedAt) : 'never']),
          'No webhooks.',
        ),
        h('h3', {}, 'Schedules'),
        table(
          ['Cron', 'Next run'],
          data.repo.schedules.map((s) => [h('code', {}, s.cron), s.nextRunAt ? time(s.nextRunAt) : '']),
          'No schedules.',
        ),
        h('p', { class: 'muted small' }, "A webhook's secret is shown once, when it is made."),
      );
    }),
  ];
}
