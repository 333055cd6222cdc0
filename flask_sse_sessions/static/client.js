/*
 * connect(url, options) -> stream: one session's events, parsed and dispatched
 * by their JSON "type". EventSource resumes by itself after a dropped
 * connection; when it gives up (any HTTP status but 200), a fetch of the same
 * URL tells why, and the stream reopens from its last id after Retry-After or
 * a backoff with jitter, or closes for good (204, or a refusal retrying cannot
 * fix).
 */

var WITHOUT_ID = ["connected", "heartbeat", "reset"];

function connect(url, options) {
  options = options || {};
  var minDelay = options.minDelay || 1000;
  var maxDelay = options.maxDelay || 30000;
  var listeners = Object.create(null);
  var source = null;
  var probe = null;
  var timer = null;
  var failures = 0;

  var stream = {
    state: "connecting",
    lastEventId: options.lastEventId || null,
    error: null,
    on: function (type, fn) {
      (listeners[type] = listeners[type] || []).push(fn);
      return stream;
    },
    off: function (type, fn) {
      listeners[type] = (listeners[type] || []).filter(function (f) {
        return f !== fn;
      });
      return stream;
    },
    close: finish,
  };
  open();
  return stream;

  function open() {
    var es = (source = new EventSource(resumeUrl(url, stream.lastEventId), {
      withCredentials: Boolean(options.withCredentials),
    }));
    es.onopen = function () {
      setState("open");
    };
    es.onmessage = receive;
    es.onerror = function () {
      if (es.readyState !== EventSource.CLOSED) {
        setState("connecting");
      } else if (es === source) {
        source = null;
        recover();
      }
    };
  }

  function receive(event) {
    var data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      report(err);
      return;
    }
    var type = data.type;
    var id = WITHOUT_ID.indexOf(type) < 0 ? event.lastEventId || null : null;
    if (id) stream.lastEventId = id;
    if (type === "connected") failures = 0;
    if (type === "complete") finish();
    var fns = (listeners[type] || []).concat(type === "heartbeat" ? [] : listeners["*"] || []);
    fns.forEach(function (fn) {
      try {
        fn(data, { id: id, type: type });
      } catch (err) {
        report(err);
      }
    });
  }

  // The browser gave up: the same request, by fetch, tells why.
  function recover() {
    setState("connecting");
    var controller = (probe = new AbortController());
    fetch(resumeUrl(url, stream.lastEventId), {
      headers: { Accept: "text/event-stream" },
      credentials: options.withCredentials ? "include" : "same-origin",
      cache: "no-store",
      signal: controller.signal,
    })
      .then(function (response) {
        var answer = {
          status: response.status,
          retryAfter: Number(response.headers.get("Retry-After")),
          body: {},
        };
        if (!isPermanent(response.status)) {
          controller.abort();
          return answer;
        }
        return response.json().then(
          function (body) {
            answer.body = body;
            return answer;
          },
          function () {
            return answer;
          }
        );
      }, function () {
        return { status: 0, retryAfter: 0, body: {} };
      })
      .then(function (answer) {
        if (controller !== probe) return;
        probe = null;
        if (isPermanent(answer.status)) {
          stream.error = {
            status: answer.status,
            error: answer.body.error,
            message: answer.body.message,
          };
        }
        if (answer.status === 204 || stream.error) {
          finish();
        } else {
          timer = setTimeout(function () {
            timer = null;
            open();
          }, retryDelay(answer.retryAfter));
        }
      });
  }

  // Retry-After (seconds) when the server said it, or else exponential backoff;
  // both with jitter so that the clients of one server do not return together.
  function retryDelay(retryAfter) {
    var base = Math.min(maxDelay, minDelay * Math.pow(2, failures));
    failures += 1;
    if (retryAfter > 0) return retryAfter * 1000 + Math.random() * minDelay;
    return base / 2 + (Math.random() * base) / 2;
  }

  function finish() {
    if (source) source.close();
    if (probe) probe.abort();
    clearTimeout(timer);
    source = probe = timer = null;
    setState("closed");
  }

  function setState(state) {
    if (stream.state === state || stream.state === "closed") return;
    stream.state = state;
    if (options.onStateChange) options.onStateChange(state, stream);
  }
}

// 4xx but Request Timeout and Too Many Requests: the same request fails again.
function isPermanent(status) {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function resumeUrl(url, lastEventId) {
  if (!lastEventId) return url;
  return url + (url.indexOf("?") < 0 ? "?" : "&") + "lastEventId=" + encodeURIComponent(lastEventId);
}

function report(err) {
  setTimeout(function () {
    throw err;
  });
}
