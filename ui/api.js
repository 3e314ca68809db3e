// The GraphQL API over HTTP: `POST /graphql` with the tab's token. The token lives in
// sessionStorage (this tab only, gone when it closes) and is only ever sent in a header.

const KEY = 'monkeyci.token';

/** The signed-in token of this tab. */
export const session = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  set(token) {
    sessionStorage.setItem(KEY, token);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** An error the API answered with (its `extensions.code` and message), or a failure to reach it. */
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }

  /** The first error of a GraphQL `errors` list. */
  static of(errors) {
    const first = errors?.[0] ?? {};
    return new ApiError(first.extensions?.code ?? 'ERROR', first.message ?? 'the API answered with an error');
  }
}

/** Runs a query or mutation; its `data`, or throws an `ApiError`. */
export async function gql(query, variables = {}, token = session.token) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token ?? ''}` },
      body: JSON.stringify({ query, variables }),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (error) {
    throw new ApiError('NETWORK', `cannot reach the server: ${error.message}`);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`HTTP_${response.status}`, `the server answered ${response.status} without a GraphQL response`);
  }
  if (body.errors?.length) throw ApiError.of(body.errors);
  return body.data;
}

/** Runs a mutation of the form `field(input: $input): ID!`; the id. */
export async function mutate(field, inputType, input) {
  const data = await gql(`mutation($input: ${inputType}!) { ${field}(input: $input) }`, { input });
  return data[field];
}
