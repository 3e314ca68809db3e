// Opens a build whose job `big` has a very large log in MonkeyCI's web UI (headless Chromium),
// goes to its end, to a linked line, to a scrolled-to place and to a found word, downloads it;
// then pages through a repo's long list of builds, and drops the page's WebSocket while a build
// runs and ends. Prints one JSON line of what it saw and how long each step took.
//
//   node tests/biglog.mjs <server URL> <admin token> <empty profile directory> <build id> \
//       <lines> <line of the needle> <needle> <id of a repo with many builds>
import { stat } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { apiClient, finish, keepLocal, openBrowser, rendererBytes, signIn } from './browser.mjs';

const [base, token, profile, build, lines, needleLine, needle, manyRepo] = process.argv.slice(2);
if (!manyRepo) {
  console.error('usage: node tests/biglog.mjs <server URL> <token> <profile> <build id> <lines> <needle line> <needle> <repo id>');
  process.exit(2);
}
const origin = new URL(base).origin;
const WAIT = { timeout: 30000 };
const LOG = '[data-job="big"] .log';
const total = Number(lines);

/** A GraphQL request of this script (not of the page), as the admin unless `as` is given. */
const api = apiClient(origin, token);

const context = await openBrowser(profile);
// The page's WebSockets, and a switch that sends new ones to a path that refuses them (the
// connection "drops" and stays down until the switch is turned back).
await context.addInitScript(() => {
  const Original = window.WebSocket;
  window.sockets = [];
  window.offline = false;
  window.WebSocket = class extends Original {
    constructor(url, protocols) {
      super(window.offline ? url.replace('/graphql', '/offline') : url, protocols);
      window.sockets.push(this);
    }
  };
});
const problems = [];
const outcome = { problems, ms: {} };
/** Runs `step` and records how long it took in `outcome.ms[name]`. */
const timed = async (name, step) => {
  const start = performance.now();
  const result = await step();
  outcome.ms[name] = Math.round(performance.now() - start);
  return result;
};
/** The line numbers drawn in the big log, and whether any is still waiting for its text. */
const drawn = (page) =>
  page.$$eval(`${LOG} .line`, (rows) => ({
    numbers: rows.filter((r) => r.dataset.line).map((r) => Number(r.dataset.line)),
    pending: rows.filter((r) => r.dataset.pending).length,
  }));
try {
  await keepLocal(context, origin, outcome);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => {
    // The refused reconnections while "offline" are expected.
    if (message.type() === 'error' && !message.text().includes('/offline')) problems.push(message.text());
  });
  await signIn(page, origin, token, WAIT);
  await page.goto(`${origin}/#/builds/${build}`);
  await page.waitForSelector(`${LOG} .line[data-line="${total}"]`, WAIT);

  // A first load of the build page (the token is kept for the tab): until its summary and the
  // log's last line are on the screen.
  await timed('firstLoad', async () => {
    await page.reload();
    await page.waitForSelector('.summary .status', WAIT);
    await page.waitForSelector('#retry', { ...WAIT, state: 'visible' });
  });
  await timed('tailAfterSummary', () => page.waitForSelector(`${LOG} .line[data-line="${total}"]`, WAIT));
  outcome.ms.tail = outcome.ms.firstLoad + outcome.ms.tailAfterSummary;
  const atEnd = await drawn(page);
  outcome.tail = {
    last: Math.max(...atEnd.numbers),
    rows: atEnd.numbers.length + atEnd.pending,
    text: await page.textContent(`${LOG} .line[data-line="${total}"] .text`),
    atBottom: await page.$eval(LOG, (log) => log.scrollTop + log.clientHeight >= log.scrollHeight - 2),
    following: await page.isChecked('#follow-big'),
  };
  // What the page loaded to get here: its JavaScript, as sent and gzipped.
  const scripts = await page.evaluate(() =>
    performance.getEntriesByType('resource').filter((r) => r.name.endsWith('.js')).map((r) => r.name),
  );
  const bodies = await Promise.all(scripts.map((url) => fetch(url).then((r) => r.arrayBuffer())));
  outcome.javascript = {
    files: scripts.length,
    bytes: bodies.reduce((sum, b) => sum + b.byteLength, 0),
    gzipBytes: gzipSync(Buffer.concat(bodies.map((b) => Buffer.from(b))), { level: 9 }).length,
  };

  // A linked line, far from the end.
  const middle = Math.floor(total / 2);
  await timed('linkedLine', async () => {
    await page.evaluate(([b, n]) => {
      location.hash = `#/builds/${b}/big/${n}`;
    }, [build, middle]);
    await page.waitForSelector(`${LOG} .line.target[data-line="${middle}"]`, WAIT);
  });
  outcome.linked = await page.textContent(`${LOG} .line.target .text`);

  // Scrolled by hand to a quarter of the log: the lines there arrive.
  const quarter = await timed('scroll', async () => {
    await page.$eval(LOG, (log) => {
      log.scrollTop = (log.scrollHeight - log.clientHeight) / 4;
    });
    // Until the rows drawn are those a quarter of the way down, every one with its text.
    await page.waitForFunction(
      ([selector, quarterLine]) => {
        const rows = [...document.querySelectorAll(`${selector} .line`)];
        const near = Math.abs(Number(rows[0]?.dataset.line) - quarterLine) < quarterLine / 20;
        return rows.length > 0 && near && rows.every((r) => r.dataset.line);
      },
      [LOG, total / 4],
      WAIT,
    );
    return drawn(page);
  });
  outcome.scrolled = { first: Math.min(...quarter.numbers), last: Math.max(...quarter.numbers) };

  // A word found on the server.
  await timed('find', async () => {
    await page.fill('#find-big', needle);
    await page.press('#find-big', 'Enter');
    await page.waitForSelector(`${LOG} .line.match[data-line="${needleLine}"]`, WAIT);
  });
  outcome.found = {
    line: Number(needleLine),
    text: await page.textContent(`${LOG} .line.match .text`),
    said: await page.textContent('[data-job="big"] .found'),
  };

  // The tab's memory after all that, and how many lines are on the page.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const { metrics } = await cdp.send('Performance.getMetrics');
  const metric = (name) => metrics.find((m) => m.name === name)?.value ?? null;
  outcome.memory = {
    rendererBytes: await rendererBytes(profile),
    jsHeapUsedBytes: metric('JSHeapUsedSize'),
    domNodes: metric('Nodes'),
    logRows: await page.$$eval(`${LOG} .line`, (rows) => rows.length),
  };

  // The whole log, by its download link: saved to disk as it arrives.
  const download = await timed('download', async () => {
    const [saved] = await Promise.all([page.waitForEvent('download', WAIT), page.click('[data-job="big"] button.download')]);
    const path = await saved.path();
    return { name: saved.suggestedFilename(), bytes: (await stat(path)).size, failure: await saved.failure() };
  });
  outcome.download = download;

  // A repo with more builds than a page: 50 rows, then the rest on "Show more".
  await page.evaluate((repo) => {
    location.hash = `#/repos/${repo}`;
  }, manyRepo);
  await page.waitForSelector('.builds li[data-build]', WAIT);
  outcome.lists = { firstPage: await page.$$eval('.builds li[data-build]', (rows) => rows.length) };
  await page.click('button.more');
  await page.waitForFunction((n) => document.querySelectorAll('.builds li[data-build]').length > n, outcome.lists.firstPage, WAIT);
  outcome.lists.all = await page.$$eval('.builds li[data-build]', (rows) => rows.length);
  outcome.lists.moreHidden = await page.$eval('button.more', (b) => b.hidden);

  // The connection drops; a build is triggered and ends meanwhile; once the page is connected
  // again it reads the list again and shows the build as it ended.
  await page.evaluate(() => {
    window.offline = true;
    for (const socket of window.sockets) socket.close();
  });
  const missed = (await api('mutation($r: ID!) { triggerBuild(input: { repoId: $r }) }', { r: manyRepo })).triggerBuild;
  for (let tries = 0; ; tries++) {
    const { build: state } = await api('query($id: ID!) { build(id: $id) { status finishedAt } }', { id: missed });
    if (state?.finishedAt) break;
    if (tries > 400) throw new Error('the build did not end');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  outcome.lists.shownWhileDown = (await page.$(`.builds li[data-build="${missed}"]`)) !== null;
  await page.evaluate(() => {
    window.offline = false;
  });
  const row = await page.waitForSelector(`.builds li[data-build="${missed}"] .status`, WAIT);
  outcome.lists.afterReconnect = await row.getAttribute('data-status');
} catch (error) {
  await finish(context, outcome, error);
}
await finish(context, outcome);
