// Drives the GraphQL console of a running MonkeyCI server in headless Chromium, with every
// request to another host refused, and prints one JSON line of what happened.
//
//   node tests/graphiql.mjs http://127.0.0.1:8080 <viewer token>
//
// 1. Sends graphql-js's own introspection query (every option on) over HTTP.
// 2. Opens /graphql, types the token into the token field, runs `{ orgs … }` and reads the
//    result pane.
import { getIntrospectionQuery } from 'graphql';
import { chromium } from 'playwright-core';

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error('usage: node tests/graphiql.mjs <server URL> <token>');
  process.exit(2);
}
const origin = new URL(base).origin;

const introspection = await fetch(`${origin}/graphql`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  body: JSON.stringify({
    query: getIntrospectionQuery({
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
    }),
  }),
}).then((response) => response.json());

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const foreign = [];
let requests = 0;
try {
  const context = await browser.newContext();
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`)) {
      requests += 1;
      return route.continue();
    }
    foreign.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  const query = '{ orgs { edges { node { name slug } } } }';
  await page.goto(`${origin}/graphql?query=${encodeURIComponent(query)}`);
  await page.fill('#token', token);
  // The console renders again with the token (and loads the schema with it); then the query runs.
  await page.waitForSelector('body[data-token="set"] .graphiql-execute-button', { timeout: 15000 });
  await page.click('.graphiql-execute-button');
  await page.waitForFunction(
    () => (document.querySelector('.result-window')?.textContent || '').includes('"data"'),
    null,
    { timeout: 15000 }
  );
  const result = await page.evaluate(() => document.querySelector('.result-window')?.textContent || '');
  console.log(
    JSON.stringify({
      introspection: {
        errors: introspection.errors ?? null,
        typeCount: introspection.data?.__schema?.types?.length ?? 0,
      },
      result,
      foreign,
      requests,
      problems,
    })
  );
} finally {
  await browser.close();
}
