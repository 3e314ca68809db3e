// Drives MonkeyCI's web UI in headless Chromium against a running server whose admin token is
// given and that has one org with one repo, and prints one JSON line of what happened.
//
//   node tests/ui.mjs http://127.0.0.1:8080 <admin token> <empty profile directory> <viewer token>
//
// Every request and WebSocket of the page is recorded; any to another host is refused.
import { apiClient, finish, keepLocal, openBrowser } from './browser.mjs';

const [base, token, profile, viewer] = process.argv.slice(2);
if (!base || !token || !profile || !viewer) {
  console.error('usage: node tests/ui.mjs <server URL> <token> <profile directory> <viewer token>');
  process.exit(2);
}
const origin = new URL(base).origin;
const WAIT = { timeout: 20000 };

/** A GraphQL request of this script (not of the page), as the admin unless `as` is given. */
const api = apiClient(origin, token);

const context = await openBrowser(profile);
const websockets = [];
const problems = [];
const outcome = { websockets, problems };
try {
  await keepLocal(context, origin, outcome);
  const { requests } = outcome;
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('websocket', (socket) => websockets.push(socket.url()));
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => {
    // The browser reports the API's 401 to the wrong token as a failed resource; that one is expected.
    if (message.type() === 'error' && !message.text().includes('401 (Unauthorized)')) problems.push(message.text());
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) outcome.navigations = (outcome.navigations ?? 0) + 1;
  });

  const response = await page.goto(`${origin}/`);
  outcome.csp = response.headers()['content-security-policy'] ?? null;

  // A wrong token: the API's error code is shown.
  await page.fill('#token', 'mci_this-is-not-a-token');
  await page.click('#sign-in button[type=submit]');
  const error = await page.waitForSelector('#sign-in .error', WAIT);
  outcome.wrongToken = { code: await error.getAttribute('data-code'), text: await error.textContent() };

  // The right one: the orgs page.
  await page.fill('#token', token);
  await page.click('#sign-in button[type=submit]');
  await page.click('main a[href="#/orgs/web-ui"]', WAIT);
  outcome.storedToken = await page.evaluate(() => sessionStorage.getItem('monkeyci.token'));

  // The org page, then the repo page; from here on the page must never load again.
  await page.click('main li[data-repo] a', WAIT);
  await page.waitForSelector('#trigger', WAIT);
  // An owner (the admin) sees the repo's webhooks and schedules: none yet.
  await page.waitForSelector('#triggers h3', WAIT);
  outcome.repoOwner = await page.$$eval('#triggers p.muted', (ps) => ps.map((p) => p.textContent).slice(0, 2));
  // An owner adds a webhook: its payload URL and secret are shown once, then only its URL.
  await page.click('#new-webhook button[type=submit]');
  const secrets = await page.waitForSelector('#triggers .once', WAIT);
  const shownOnce = await secrets.$$eval('code.secret', (codes) => codes.map((c) => c.textContent));
  await page.waitForSelector('#triggers tbody tr', WAIT);
  await page.click('#triggers .once button.dismiss');
  outcome.webhook = {
    url: shownOnce[0],
    secretLength: shownOnce[1]?.length ?? 0,
    listed: await page.$$eval('#triggers tbody tr code', (codes) => codes.map((c) => c.textContent)),
    secretStillShown: await page.evaluate((secret) => document.body.innerText.includes(secret), shownOnce[1]),
    secretStored: await page.evaluate((secret) => JSON.stringify({ ...sessionStorage, ...localStorage }).includes(secret), shownOnce[1]),
  };
  const navigationsBefore = outcome.navigations;
  await page.evaluate(() => {
    window.seen = [];
    window.stayed = true;
    const record = () => {
      const status = document.querySelector('.builds li[data-build] .status')?.dataset.status;
      if (status && window.seen.at(-1) !== status) window.seen.push(status);
    };
    new MutationObserver(record).observe(document.querySelector('main'), { subtree: true, childList: true });
  });
  await page.fill('#trigger-params', 'GREETING=hello');
  await page.click('#trigger button[type=submit]');
  // The keyboard's focus on the new build's link stays there while the build changes.
  await page.waitForSelector('.builds li[data-build] a', WAIT);
  await page.evaluate(() => {
    window.focused = document.querySelector('.builds li[data-build] a');
    window.focused.focus();
  });
  await page.waitForSelector('.builds li[data-build] .status-succeeded', { timeout: 90000 });
  outcome.seen = await page.evaluate(() => window.seen);
  outcome.focusKept = await page.evaluate(() => window.focused.isConnected && document.activeElement === window.focused);
  outcome.reloaded = !(await page.evaluate(() => window.stayed === true)) || outcome.navigations !== navigationsBefore;

  // Back on the org page, the repo's latest build.
  await page.click('#crumbs a[href="#/orgs/web-ui"]');
  // An owner sees the org's members, tokens and audit log.
  await page.waitForSelector('#tokens td', WAIT);
  await page.waitForSelector('#audit tbody tr', WAIT);
  outcome.orgOwner = await page.evaluate(() => ({
    members: document.querySelector('#members p')?.textContent ?? null,
    tokens: [...document.querySelectorAll('#tokens tbody tr')].map((r) => `${r.cells[0].textContent} ${r.cells[1].textContent}`),
    audit: [...document.querySelectorAll('#audit tbody tr')].map((r) => r.cells[2].textContent),
  }));
  // An owner makes an org token (shown once, and it works), then revokes it.
  await page.fill('#token-name', 'made-in-ui');
  await page.selectOption('#token-role', 'viewer');
  await page.click('#new-token button[type=submit]');
  const madeToken = await (await page.waitForSelector('#tokens .once code.secret', WAIT)).textContent();
  await page.waitForSelector('#tokens tbody tr:has-text("made-in-ui")', WAIT);
  const tokenRows = () => page.$$eval('#tokens tbody tr', (rows) => rows.map((r) => `${r.cells[0].textContent} ${r.cells[1].textContent}`));
  outcome.madeToken = {
    prefix: madeToken.slice(0, 4),
    works: (await api('{ orgs(first: 5) { edges { node { slug } } } }', {}, madeToken)).orgs.edges.map((e) => e.node.slug),
    listed: await tokenRows(),
    stored: await page.evaluate((t) => JSON.stringify({ ...sessionStorage, ...localStorage }).includes(t), madeToken),
  };
  await page.click('#tokens .once button.dismiss');
  await page.click('#tokens tbody tr:has-text("made-in-ui") button.revoke');
  await page.waitForSelector('#tokens tbody tr:has-text("made-in-ui")', { ...WAIT, state: 'detached' });
  outcome.madeToken.afterRevoke = await tokenRows();
  outcome.madeToken.refused = await api('{ orgs(first: 5) { edges { node { slug } } } }', {}, madeToken).then(
    () => false,
    (error) => String(error).includes('UNAUTHENTICATED'),
  );
  // An owner adds a member by user id, changes the role, and removes the member.
  const uma = (await api('mutation { createUser(input: {name: "Uma"}) }')).createUser;
  await page.fill('#member-user', uma);
  await page.selectOption('#member-role', 'viewer');
  await page.click('#add-member button[type=submit]');
  await page.waitForSelector('#members tbody tr:has-text("Uma")', WAIT);
  const members = () => api('query($id: ID!) { org(id: $id) { members { name role } } }', { id: webOrgId });
  const webOrgId = (await api('{ orgs(first: 10) { edges { node { id slug } } } }')).orgs.edges.find((e) => e.node.slug === 'web-ui').node.id;
  outcome.member = { added: (await members()).org.members };
  await page.selectOption('#members tbody tr:has-text("Uma") select', 'member');
  for (let tries = 0; (await members()).org.members[0]?.role !== 'member'; tries++) {
    if (tries > 200) throw new Error('the role did not change');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  outcome.member.changed = (await members()).org.members;
  await page.click('#members tbody tr:has-text("Uma") button.remove');
  await page.waitForSelector('#members p.muted:text-is("No members.")', WAIT);
  outcome.member.removed = (await members()).org.members;
  const latest = await page.waitForSelector('main li[data-repo] .latest .status', WAIT);
  outcome.orgLatest = await latest.getAttribute('data-status');
  await latest.click();

  // The build page: jobs, dependency, logs with colours, markup as text.
  await page.waitForSelector('section[data-job="test"] .line[data-line="301"]', WAIT);
  await page.waitForSelector('.summary .status-succeeded', WAIT);
  outcome.build = await page.evaluate(() => {
    const spanOf = (text) => {
      const span = [...document.querySelectorAll('[data-job="compile"] .log .text span')].find((s) => s.textContent === text);
      return span ? { class: span.className, text: span.textContent } : null;
    };
    const texts = [...document.querySelectorAll('.log .text')];
    return {
      status: document.querySelector('.summary .status')?.dataset.status,
      jobs: [...document.querySelectorAll('section[data-job]')].map(
        (s) => `${s.querySelector('.status')?.dataset.status} ${s.dataset.job}`,
      ),
      dependency: document.querySelector('section[data-job="test"] a.dep')?.textContent,
      graph: {
        nodes: [...document.querySelectorAll('.graph .node')].map((n) => `${n.dataset.status} ${n.dataset.job}`),
        edges: [...document.querySelectorAll('.graph .edge')].map((e) => `${e.dataset.from} -> ${e.dataset.to}`),
        // The job that waits stands right of the one it waits for.
        leftToRight:
          Number(document.querySelector('.graph .node[data-job="compile"] rect')?.getAttribute('x')) <
          Number(document.querySelector('.graph .node[data-job="test"] rect')?.getAttribute('x')),
      },
      red: spanOf('red'),
      // 256-colour and true-colour codes, as the browser computes them.
      rgb: ['orange', 'true green'].map((text) => {
        const span = [...document.querySelectorAll('[data-job="compile"] .log .text span')].find((s) => s.textContent === text);
        return span ? getComputedStyle(span).color : null;
      }),
      green: spanOf('green bold'),
      markup: texts.map((t) => t.textContent).find((t) => t.includes('<script>')),
      elementsInLogText: document.querySelectorAll('.log .text script, .log .text img, .log .text b').length,
      pwned: window.pwned ?? null,
      atTail: (() => {
        const log = document.querySelector('[data-job="test"] .log');
        return log.scrollHeight > log.clientHeight && log.scrollTop + log.clientHeight >= log.scrollHeight - 2;
      })(),
    };
  });

  // Only the lines in view are on the page: test's first line is drawn once scrolled to.
  outcome.build.drawnAtTail = await page.$$eval('[data-job="test"] .line[data-line]', (rows) => rows.length);
  await page.$eval('[data-job="test"] .log', (log) => {
    log.scrollTop = 0;
  });
  const first = await page.waitForSelector('[data-job="test"] .line[data-line="1"] .text', WAIT);
  outcome.build.greeting = await first.textContent();
  outcome.build.followAfterScroll = await page.isChecked('#follow-test');

  // Each line's time: in its number's title, and as a column once "Times" is ticked.
  await page.check('#times-test');
  outcome.build.times = await page.evaluate(() => {
    const line = document.querySelector('[data-job="test"] .line[data-line="1"]');
    const at = line.querySelector('.at');
    return {
      title: line.querySelector('.ln').title,
      datetime: at.getAttribute('datetime'),
      shown: getComputedStyle(at).display !== 'none' ? at.textContent : null,
    };
  });

  // A node of the graph leads to its job.
  await page.click('.graph .node[data-job="test"]');
  await page.waitForFunction(() => location.hash.endsWith('/test'), null, WAIT);
  outcome.build.graphLink = await page.evaluate(() => document.activeElement?.closest('section')?.dataset.job ?? null);

  // Time travel: the build's events; the build as it was after compile started, then at its
  // first event (by keyboard), then now again.
  await page.click('#history summary');
  await page.waitForSelector('.events li[data-type="BuildFinished"]', WAIT);
  // Read as they are (a job that did not exist yet has no node), without waiting.
  const shownAt = () =>
    page.evaluate(() => {
      const status = (selector) => document.querySelector(selector)?.dataset.status ?? null;
      const retry = document.querySelector('#retry');
      return {
        build: status('.summary h1 .status'),
        compile: status('.graph .node[data-job="compile"]'),
        test: status('.graph .node[data-job="test"]'),
        retry: Boolean(retry && !retry.hidden),
        at: document.querySelector('#travel-at')?.textContent ?? null,
        asOf: document.querySelector('.summary .as-of')?.textContent ?? null,
        listed: document.querySelector('.events li.at')?.textContent ?? null,
      };
    });
  const events = await page.$$eval('.events li', (items) => items.map((i) => i.textContent));
  await page.click('.events li:has(button:text-is("JobStarted compile")) button');
  await page.waitForSelector('.summary h1 .status[data-status="RUNNING"]', WAIT);
  await page.waitForSelector('.graph .node[data-job="compile"][data-status="RUNNING"]', WAIT);
  const running = await shownAt();
  await page.focus('#travel');
  await page.keyboard.press('Home');
  await page.waitForSelector('.summary h1 .status[data-status="QUEUED"]', WAIT);
  const queued = await shownAt();
  await page.click('#travel-now');
  await page.waitForSelector('.summary h1 .status[data-status="SUCCEEDED"]', WAIT);
  outcome.travel = { events: events.length, running, queued, now: await shownAt() };

  // Line 2 of compile, by its link; the link opened again (a reload keeps the tab's token).
  await page.click('[data-job="compile"] .line[data-line="2"] a.ln');
  await page.waitForSelector('[data-job="compile"] .line.target', WAIT);
  const linked = page.url();
  outcome.tokenInUrls = [...requests, ...websockets, linked].some((u) => u.includes(token));
  await page.reload();
  const target = await page.waitForSelector('[data-job="compile"] .line.target', WAIT);
  outcome.build.linkedLine = Number(await target.getAttribute('data-line'));

  const buildUrl = page.url().replace(/\/compile\/\d+$/, '');
  // The raw log, by a link with a ticket: the token is in no URL (checked above).
  const [download] = await Promise.all([
    page.waitForEvent('download', WAIT),
    page.click('[data-job="test"] button.download'),
  ]);
  const { readFile } = await import('node:fs/promises');
  outcome.build.download = { name: download.suggestedFilename(), text: await readFile(await download.path(), 'utf8') };
  // The artifact the compile job saved, by its download link.
  const [artifact] = await Promise.all([
    page.waitForEvent('download', WAIT),
    page.click('.artifacts tr[data-artifact="dist"] button.download'),
  ]);
  const artifactBytes = await readFile(await artifact.path());
  outcome.build.artifact = {
    name: artifact.suggestedFilename(),
    gzip: artifactBytes[0] === 0x1f && artifactBytes[1] === 0x8b,
    job: await page.textContent('.artifacts tr[data-artifact="dist"] td:nth-child(2)'),
  };
  // With UI_SCREENSHOTS=<dir>, pictures of the build page for people (README, reviews).
  const shots = process.env.UI_SCREENSHOTS;
  if (shots) await page.screenshot({ path: `${shots}/build-1280.png`, fullPage: true });

  // 390 px wide: the build page and the repo page fit.
  await page.setViewportSize({ width: 390, height: 844 });
  const widest = () => page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth));
  outcome.narrow = { width: 390, build: await widest() };
  if (shots) await page.screenshot({ path: `${shots}/build-390.png`, fullPage: true });
  await page.click('#crumbs a[href^="#/repos/"]');
  await page.waitForSelector('.builds li[data-build]', WAIT);
  outcome.narrow.repo = await widest();
  if (shots) await page.screenshot({ path: `${shots}/repo-390.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  // Retry from the build page opens the new build; Cancel ends it.
  await page.goto(buildUrl);
  // When each line of the retried build's first job reaches the page, against the time the
  // runner read it from the job (`at`): how late live output is (a figure for BENCHMARKS.md).
  await page.evaluate(() => {
    window.arrivals = [];
    new MutationObserver((changes) => {
      const seen = Date.now();
      for (const change of changes) {
        for (const node of change.addedNodes) {
          if (node.nodeType !== 1 || !node.matches('section[data-job="compile"] .line[data-line]')) continue;
          window.arrivals.push({ line: Number(node.dataset.line), lateMs: seen - Date.parse(node.querySelector('.ln').title) });
        }
      }
    }).observe(document.querySelector('main'), { subtree: true, childList: true });
  });
  await page.click('#retry', WAIT);
  await page.waitForFunction((old) => location.href !== old, buildUrl, WAIT);
  // Only the new build's lines count (the old build's were drawn from a fetched page).
  await page.evaluate(() => {
    window.arrivals = [];
  });
  await page.waitForSelector('.summary a[href^="#/builds/"]', WAIT);
  // Its output shows while compile still runs (it sleeps after printing), in colour.
  const live = await page.waitForFunction(
    () => {
      const job = document.querySelector('section[data-job="compile"]');
      const red = job?.querySelector('.line[data-line="1"] .fg-1');
      return job?.querySelector('h3 .status')?.dataset.status === 'RUNNING' && red ? red.textContent : null;
    },
    null,
    WAIT,
  );
  outcome.liveWhileRunning = await live.jsonValue();
  outcome.liveLateness = await page.evaluate(() => window.arrivals);
  await page.click('#cancel', WAIT);
  const canceled = await page.waitForSelector('.summary h1 .status-canceled', { timeout: 60000 });
  outcome.retried = {
    status: await canceled.getAttribute('data-status'),
    retryOf: (await page.$(`.summary a[href="${new URL(buildUrl).hash}"]`)) !== null,
  };

  // A build that fails: its failed job's log is one click from the repo page.
  await page.click('#crumbs a[href^="#/repos/"]');
  await page.fill('#trigger-params', 'GREETING=boom');
  await page.click('#trigger button[type=submit]');
  // The list is drawn again at each change of a build: found by selector at each step, not held.
  await page.waitForSelector('.builds li[data-build] a.failed-job', { timeout: 60000 });
  const linkText = await page.textContent('.builds li[data-build] a.failed-job');
  await page.click('.builds li[data-build] a.failed-job');
  await page.waitForSelector('[data-job="compile"] .status-failed', WAIT);
  await page.waitForSelector('[data-job="test"] .status-skipped', WAIT);
  outcome.failed = {
    link: linkText,
    job: await page.getAttribute('[data-job="compile"] h3 .status', 'data-status'),
    skipped: await page.getAttribute('[data-job="test"] h3 .status', 'data-status'),
  };

  // Keyboard: the sign-out button is reachable and works.
  await page.focus('#sign-out');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#sign-in', WAIT);
  outcome.signedOut = {
    token: await page.evaluate(() => sessionStorage.getItem('monkeyci.token')),
    form: (await page.$('#token')) !== null,
  };

  // A viewer reads the build and the repo, and is offered no retry, cancel or trigger.
  await page.goto(buildUrl);
  await page.fill('#token', viewer);
  await page.click('#sign-in button[type=submit]');
  const status = await page.waitForSelector('.summary h1 .status', WAIT);
  await page.waitForSelector('.graph .node[data-status]', WAIT);
  outcome.viewer = {
    status: await status.getAttribute('data-status'),
    retry: await page.isVisible('#retry'),
    cancel: await page.isVisible('#cancel'),
    graphNodes: await page.$$eval('.graph .node', (nodes) => nodes.length),
  };
  await page.click('#crumbs a[href^="#/repos/"]');
  await page.waitForSelector('#viewer-note', WAIT);
  outcome.viewer.trigger = (await page.$('#trigger')) !== null;
  outcome.viewer.ownerSections = await page.$$eval('#triggers, #members, #audit', (found) => found.length);

  // A member whose role is lowered to viewer while the page is open still sees Retry; the API
  // refuses it, and the page shows the refusal with its code.
  const orgId = (await api('{ orgs(first: 10) { edges { node { id slug } } } }')).orgs.edges.find(
    (e) => e.node.slug === 'web-ui',
  ).node.id;
  const userId = (await api('mutation { createUser(input: {name: "Mem"}) }')).createUser;
  const membership = { orgId, userId, role: 'member' };
  await api('mutation($m: MemberInput!) { addMember(input: $m) }', { m: membership });
  const memberToken = (
    await api('mutation($u: ID!) { createApiToken(input: {name: "mem", userId: $u}) { token } }', { u: userId })
  ).createApiToken.token;
  await page.click('#sign-out');
  await page.goto(buildUrl);
  await page.fill('#token', memberToken);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#retry', { ...WAIT, state: 'visible' });
  await api('mutation($m: MemberInput!) { changeMemberRole(input: $m) }', { m: { ...membership, role: 'viewer' } });
  // Until the API itself answers with the new role (the page is not asked: it must not reload).
  for (let tries = 0; ; tries++) {
    const role = (await api('query($id: ID!) { org(id: $id) { myRole } }', { id: orgId }, memberToken)).org.myRole;
    if (role === 'viewer') break;
    if (tries > 200) throw new Error(`the member is still ${role}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await page.click('#retry');
  const refused = await page.waitForSelector('.summary .error', WAIT);
  outcome.demoted = { code: await refused.getAttribute('data-code') };
} catch (error) {
  await finish(context, outcome, error);
}
await finish(context, outcome);
