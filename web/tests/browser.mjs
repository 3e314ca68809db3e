// What the browser scripts share: Debian's Chromium started headless with a profile of its own,
// every request to another host refused, and the memory of the page's renderer process.
import { readdir, readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

/** Chromium with a fresh profile in `profile`, as the tests run it. */
export function openBrowser(profile, viewport = { width: 1280, height: 900 }) {
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport,
    acceptDownloads: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Lets the pages of `context` reach `origin` only: each request to it is listed in
 * `outcome.requests`, any other is refused and listed in `outcome.foreign`.
 */
export async function keepLocal(context, origin, outcome) {
  outcome.requests ??= [];
  outcome.foreign ??= [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`)) {
      outcome.requests.push(url);
      return route.continue();
    }
    outcome.foreign.push(url);
    return route.abort();
  });
}

/** The processes on this machine as `{ pid, parent, rssBytes, command }`. */
async function processes() {
  const found = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
      const command = (await readFile(`/proc/${name}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      found.push({ pid: Number(name), parent: Number(fields[1]), rssBytes: rss, command });
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/**
 * The resident memory of the largest renderer process of the browser whose profile is
 * `profile`: what one tab costs the machine (each page runs in a renderer of its own).
 */
export async function rendererBytes(profile) {
  const all = await processes();
  const browser = all.find((p) => p.command.includes(`--user-data-dir=${profile}`) && !p.command.includes('--type='));
  if (!browser) return null;
  const byPid = new Map(all.map((p) => [p.pid, p]));
  const descends = (p) => {
    for (let at = p; at; at = byPid.get(at.parent)) if (at.pid === browser.pid) return true;
    return false;
  };
  const renderers = all.filter((p) => p.command.includes('--type=renderer') && descends(p));
  return renderers.length ? Math.max(...renderers.map((p) => p.rssBytes)) : null;
}

/** Signs in on the page at `origin` with `token` and waits for the orgs page. */
export async function signIn(page, origin, token, wait) {
  await page.goto(`${origin}/`);
  await page.fill('#token', token);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('main a[href^="#/orgs/"]', wait);
}

/**
 * A GraphQL client of the script itself (not of the page) for the server at `origin`, acting
 * with `token` unless a request names another: `api(query, variables, as)` gives `data` or throws.
 */
export function apiClient(origin, token) {
  return async (query, variables = {}, as = token) => {
    const response = await fetch(`${origin}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${as}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
    return body.data;
  };
}

/**
 * Ends a script: closes the browser and prints `outcome` as one JSON line; after a failure,
 * with the error and what the page showed, and exit code 1.
 */
export async function finish(context, outcome, error = null) {
  if (error) {
    outcome.failure = String(error);
    outcome.shown = await context
      .pages()[0]
      ?.evaluate(() => document.querySelector('main')?.innerText.slice(0, 2000))
      .catch(() => null);
  }
  await context.close();
  console.log(JSON.stringify(outcome));
  if (error) process.exit(1);
}
