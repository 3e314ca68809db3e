// MonkeyCI's GraphQL console: GraphiQL with a token field. Queries and mutations go to
// POST /graphql with `Authorization: Bearer <token>`; subscriptions go over a WebSocket to
// /graphql (protocol graphql-transport-ws) with the token in `connection_init`. Everything is
// served by this server: the page makes no request to another host.
(function () {
  'use strict';

  var TOKEN_KEY = 'monkeyci.token';
  var input = document.getElementById('token');
  var state = document.getElementById('token-state');

  function token() {
    return input.value.trim();
  }

  function showTokenState() {
    state.textContent = token() ? 'requests carry this token' : 'no token: requests are refused unless the server runs without authentication';
  }

  // The token stays for this browser tab only.
  input.value = window.sessionStorage.getItem(TOKEN_KEY) || '';
  input.addEventListener('input', function () {
    window.sessionStorage.setItem(TOKEN_KEY, token());
    showTokenState();
  });
  document.getElementById('auth').addEventListener('submit', function (event) {
    event.preventDefault();
  });
  showTokenState();

  // Whether the operation GraphiQL runs is a subscription.
  function isSubscription(params) {
    var text = (params.query || '').replace(/#[^\n]*/g, '');
    if (params.operationName) {
      return new RegExp('\\bsubscription\\s+' + params.operationName + '\\b').test(text);
    }
    return /^\s*subscription\b/.test(text);
  }

  function httpFetch(params) {
    var headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    if (token()) {
      headers.Authorization = 'Bearer ' + token();
    }
    return fetch('/graphql', { method: 'POST', headers: headers, body: JSON.stringify(params) }).then(
      function (response) {
        return response.json();
      }
    );
  }

  // One subscription over its own WebSocket, as an async iterator of results.
  function subscribe(params) {
    var queue = [];
    var waiting = null;
    var done = false;
    var url = (window.location.protocol === 'https:' ? 'wss://' : 'ws://') + window.location.host + '/graphql';
    var socket = new WebSocket(url, 'graphql-transport-ws');

    function push(item) {
      if (waiting) {
        var resolve = waiting;
        waiting = null;
        resolve(item);
      } else {
        queue.push(item);
      }
    }
    function finish() {
      if (!done) {
        done = true;
        push({ value: undefined, done: true });
      }
    }

    socket.onopen = function () {
      var payload = token() ? { Authorization: 'Bearer ' + token() } : {};
      socket.send(JSON.stringify({ type: 'connection_init', payload: payload }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === 'connection_ack') {
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: params }));
      } else if (message.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (message.type === 'next') {
        push({ value: message.payload, done: false });
      } else if (message.type === 'error') {
        push({ value: { errors: message.payload }, done: false });
        finish();
        socket.close(1000);
      } else if (message.type === 'complete') {
        finish();
        socket.close(1000);
      }
    };
    socket.onclose = function (event) {
      if (!done && event.code !== 1000) {
        push({ value: { errors: [{ message: 'the connection closed: ' + event.code + ' ' + event.reason }] }, done: false });
      }
      finish();
    };

    var iterator = {
      next: function () {
        if (queue.length > 0) {
          return Promise.resolve(queue.shift());
        }
        if (done) {
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise(function (resolve) {
          waiting = resolve;
        });
      },
      return: function () {
        if (socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify({ id: '1', type: 'complete' }));
          socket.close(1000);
        }
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
    iterator[Symbol.asyncIterator] = function () {
      return iterator;
    };
    return iterator;
  }

  var query = new URLSearchParams(window.location.search).get('query');
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));

  // A new fetcher makes GraphiQL load the schema again: done whenever the token changes.
  function render() {
    var props = {
      fetcher: function (params) {
        return isSubscription(params) ? subscribe(params) : httpFetch(params);
      },
      defaultEditorToolsVisibility: false,
    };
    if (query) {
      props.query = query;
    }
    root.render(React.createElement(GraphiQL, props));
    // Which token the rendered console sends, for tests and curious users.
    document.body.dataset.token = token() ? 'set' : 'none';
  }

  var pending = null;
  input.addEventListener('input', function () {
    window.clearTimeout(pending);
    pending = window.setTimeout(render, 400);
  });
  render();
})();
