// What an org's owners see and do besides builds: its members, tokens, parameter sets, ssh keys
// and audit log on the org page; a repo's webhooks and schedules on the repo page. Names and facts
// only: no secret value is ever asked for (the API has none to give). A token or webhook secret
// made here is shown once, in the page only, until it is dismissed.

import { gql, mutate } from './api.js';
import { errorBox, h, replace, time } from './dom.js';

/**
 * A titled card whose body `fill(body)` draws; an error of the API is shown in its place.
 * `after` (a form, say) stays below the body when it is drawn again.
 */
function card(id, title, fill, after = null) {
  const body = h('div', {});
  const node = h('section', { class: 'card owners', id, 'aria-label': title }, h('h2', {}, title), body, after);
  const draw = () => fill(body).catch((error) => replace(body, errorBox(error)));
  draw();
  return { node, draw };
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

const ROLES = ['owner', 'member', 'viewer'];

/** A labelled `<select>` of `options` (values shown as they are). */
function choice(id, label, options, selected) {
  const select = h('select', { id }, options.map((o) => h('option', { value: o, selected: o === selected }, o)));
  return [h('label', { for: id }, label), select];
}

/**
 * A form that runs `submit(form)` and then `done(result)`; the API's error is shown under it.
 * The button is disabled while it runs.
 */
function form(id, fields, label, submit, done) {
  const button = h('button', { type: 'submit' }, label);
  const problem = h('div', { class: 'problem', 'aria-live': 'assertive' });
  const node = h('form', { id, class: 'inline' }, fields, button, problem);
  node.addEventListener('submit', async (event) => {
    event.preventDefault();
    replace(problem);
    button.disabled = true;
    try {
      done(await submit(node));
    } catch (error) {
      replace(problem, errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
  return node;
}

/** A button that runs `run()` and then `done()`, its error shown in `problem`. */
function action(label, className, problem, run, done) {
  return h(
    'button',
    {
      type: 'button',
      class: className,
      onclick: async () => {
        replace(problem);
        try {
          await run();
          done();
        } catch (error) {
          replace(problem, errorBox(error));
        }
      },
    },
    label,
  );
}

/**
 * A secret shown once in `place`: `lines` (label and value pairs) with a button that removes
 * it. Nothing of it is stored: once dismissed or the page is left, it is gone.
 */
function showOnce(place, title, lines) {
  const box = h(
    'div',
    { class: 'once', role: 'status' },
    h('p', {}, h('strong', {}, title), ' Copy it now: it is not shown again.'),
    h('dl', {}, lines.map(([label, value]) => [h('dt', {}, label), h('dd', {}, h('code', { class: 'secret' }, value))])),
  );
  box.append(h('button', { type: 'button', class: 'dismiss', onclick: () => box.remove() }, 'Done'));
  replace(place, box);
  box.querySelector('button').focus();
}

/** The org page's sections for owners. */
export function orgOwnerSections(orgId) {
  const problems = h('div', { class: 'problem', 'aria-live': 'assertive' });
  const members = card(
    'members',
    'Members',
    async (body) => {
      const data = await gql('query($id: ID!) { org(id: $id) { members { userId name role } } }', { id: orgId });
      replace(
        body,
        table(
          ['Name', 'Role', ''],
          data.org.members.map((m) => {
            const [, role] = choice(`role-${m.userId}`, '', ROLES, m.role);
            role.setAttribute('aria-label', `Role of ${m.name}`);
            role.addEventListener('change', () =>
              mutate('changeMemberRole', 'MemberInput', { orgId, userId: m.userId, role: role.value })
                .then(() => replace(problems))
                .catch((error) => replace(problems, errorBox(error))),
            );
            const remove = action('Remove', 'remove', problems, () => mutate('removeMember', 'MemberInput', { orgId, userId: m.userId }), () => members.draw());
            return [m.name, role, remove];
          }),
          'No members.',
        ),
        problems,
      );
    },
    form(
      'add-member',
      [h('label', { for: 'member-user' }, 'User id'), h('input', { id: 'member-user', required: true, autocomplete: 'off' }), choice('member-role', 'Role', ROLES, 'member')],
      'Add member',
      (f) => mutate('addMember', 'MemberInput', { orgId, userId: f.querySelector('#member-user').value.trim(), role: f.querySelector('#member-role').value }),
      () => members.draw(),
    ),
  );
  const shownToken = h('div', {});
  const tokens = card(
    'tokens',
    'Org tokens',
    async (body) => {
      const data = await gql('query($id: ID!) { org(id: $id) { apiTokens { id name role expiresAt } } }', {
        id: orgId,
      });
      replace(
        body,
        table(
          ['Name', 'Role', 'Expires', ''],
          data.org.apiTokens.map((t) => [
            t.name,
            t.role ?? '',
            time(t.expiresAt),
            action('Revoke', 'revoke', problems, () => mutate('revokeApiToken', 'RevokeApiTokenInput', { id: t.id }), () => tokens.draw()),
          ]),
          'No org tokens.',
        ),
        h('p', { class: 'muted small' }, 'A token is shown once, when it is made; only its name and role are kept in view.'),
      );
    },
    h(
      'div',
      {},
      shownToken,
      form(
        'new-token',
        [h('label', { for: 'token-name' }, 'Name'), h('input', { id: 'token-name', required: true, autocomplete: 'off' }), choice('token-role', 'Role', ROLES, 'member')],
        'Make token',
        async (f) => {
          const data = await gql('mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { token expiresAt } }', {
            input: { orgId, name: f.querySelector('#token-name').value.trim(), role: f.querySelector('#token-role').value },
          });
          f.reset();
          return data.createApiToken;
        },
        (made) => {
          showOnce(shownToken, 'New token.', [['Token', made.token]]);
          tokens.draw();
        },
      ),
    ),
  );
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
  return [members, tokens, secrets, audit].map((c) => c.node);
}

/** The repo page's sections for owners. */
export function repoOwnerSections(repoId) {
  const shown = h('div', {});
  const problems = h('div', { class: 'problem', 'aria-live': 'assertive' });
  // The payload URL to configure at the host: this server's address and the webhook's path.
  const payloadUrl = (path) => `${location.origin}${path}`;
  const triggers = card(
    'triggers',
    'Webhooks and schedules',
    async (body) => {
      const data = await gql(
        `query($id: ID!) { repo(id: $id) { webhooks { id host path createdAt rotatedAt }
           schedules { id cron nextRunAt createdAt } } }`,
        { id: repoId },
      );
      replace(
        body,
        h('h3', {}, 'Webhooks'),
        table(
          ['Host', 'Payload URL', 'Made', 'Secret rotated', ''],
          data.repo.webhooks.map((w) => [
            w.host ?? 'any',
            h('code', {}, payloadUrl(w.path)),
            time(w.createdAt),
            w.rotatedAt ? time(w.rotatedAt) : 'never',
            h(
              'span',
              { class: 'row-actions' },
              action(
                'New secret',
                'rotate',
                problems,
                async () => {
                  const made = await gql('mutation($input: RotateWebhookSecretInput!) { rotateWebhookSecret(input: $input) { secret path } }', {
                    input: { id: w.id },
                  });
                  showOnce(shown, 'New webhook secret.', [['Payload URL', payloadUrl(made.rotateWebhookSecret.path)], ['Secret', made.rotateWebhookSecret.secret]]);
                },
                () => triggers.draw(),
              ),
              action('Delete', 'delete', problems, () => mutate('deleteWebhook', 'DeleteInput', { id: w.id }), () => triggers.draw()),
            ),
          ]),
          'No webhooks.',
        ),
        problems,
        h('h3', {}, 'Schedules'),
        table(
          ['Cron', 'Next run'],
          data.repo.schedules.map((s) => [h('code', {}, s.cron), s.nextRunAt ? time(s.nextRunAt) : '']),
          'No schedules.',
        ),
        h('p', { class: 'muted small' }, "A webhook's secret is shown once, when it is made."),
      );
    },
    h(
      'div',
      {},
      shown,
      form(
        'new-webhook',
        [choice('webhook-host', 'Host', ['GITHUB', 'GITLAB', 'BITBUCKET', 'GITEA', 'FORGEJO'], 'GITHUB')],
        'Add webhook',
        async (f) => {
          const data = await gql('mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { secret path } }', {
            input: { repoId, host: f.querySelector('#webhook-host').value },
          });
          return data.createWebhook;
        },
        (made) => {
          showOnce(shown, 'New webhook.', [['Payload URL', payloadUrl(made.path)], ['Secret', made.secret]]);
          triggers.draw();
        },
      ),
    ),
  );
  return [triggers.node];
}
