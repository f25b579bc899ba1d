/*!
 * django-sse.js: the browser side of django_sse (BSD-3-Clause).
 * No dependencies, no build step. Reference: docs/javascript.rst.
 *
 *   DjangoSSE.on("ticket.updated", function (data, event) { ... });
 *
 * One EventSource per page carries every channel the page declared (and,
 * with tab sharing, one per browser for all tabs showing the same channels).
 */
(function (global) {
  "use strict";

  // Statuses that will not change by retrying: the helper stops and says so.
  var STOP_STATUSES = [400, 401, 403, 404];
  var STREAM_TYPE = "text/event-stream";
  // Events the server sends itself; never dropped as duplicates.
  var CONTROL_EVENTS = ["stream-reset", "stream-closed", "snapshot", "presence", "presence.join", "presence.leave"];
  var PRESENCE_EVENTS = ["presence", "presence.join", "presence.leave"];
  // Sent with fetch and htmx requests: the server skips this tab's stream
  // for send_event(..., exclude=request) (docs/publishing.rst, "To others").
  var CONNECTION_HEADER = "X-SSE-Connection";
  var STORAGE_PREFIX = "django-sse:last-event-id:";
  var SEEN_LIMIT = 500;
  var DEFAULTS = {
    url: "/sse/",
    channels: [],
    position: "",
    share: true,
    retryBase: 1000,
    retryMax: 30000,
    // Cross-origin: send the other origin's cookies (EventSource and fetch).
    withCredentials: false,
    // The stream-token flow: POST the channels here before every connection and
    // stream with the token it returns (``?token=``), e.g. "/sse/token/".
    tokenUrl: "",
    // Extra headers for the token request (``{Authorization: "Token ..."}``).
    tokenHeaders: null,
    // The CSRF token for a session-authenticated token request; by default
    // the ``csrftoken`` cookie, when this page can read it.
    csrfToken: null,
  };

  function assign(target) {
    for (var i = 1; i < arguments.length; i++) {
      var source = arguments[i] || {};
      for (var key in source) {
        if (Object.prototype.hasOwnProperty.call(source, key)) target[key] = source[key];
      }
    }
    return target;
  }

  function unique(names) {
    var out = [];
    names.forEach(function (name) {
      if (name && out.indexOf(name) === -1) out.push(name);
    });
    return out;
  }

  // JSON payloads arrive parsed; anything else (an HTML fragment) stays text.
  function parse(text) {
    return decode(text).data;
  }

  // The wire tells markup from data: the server sends every value, a plain
  // string included, as JSON, and only markup marked safe verbatim. So only a
  // payload that is not JSON is markup; a JSON string is text.
  function decode(text) {
    try {
      return { data: JSON.parse(text), markup: false };
    } catch (err) {
      return { data: text, markup: true };
    }
  }

  /**
   * ``url`` if it is relative or on this page's origin (or one of
   * ``allowedOrigins``, e.g. ``["https://help.example.com"]``), else null.
   * Never ``javascript:`` or ``data:`` in an href, and no off-site link that an
   * event, from whichever channel, could plant in a site-styled toast.
   */
  function safeUrl(url, allowedOrigins) {
    if (typeof url !== "string" || !url) return null;
    try {
      var parsed = new URL(url, global.location.href);
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
      if (parsed.origin === global.location.origin) return parsed.href;
      return (allowedOrigins || []).indexOf(parsed.origin) !== -1 ? parsed.href : null;
    } catch (err) {
      return null;
    }
  }

  function sameOrigin(url) {
    try {
      return new URL(url, global.location.href).origin === global.location.origin;
    } catch (err) {
      return false;
    }
  }

  function cookie(name) {
    var found = null;
    (document.cookie || "").split(";").forEach(function (part) {
      var at = part.indexOf("=");
      if (at !== -1 && part.slice(0, at).trim() === name) found = decodeURIComponent(part.slice(at + 1).trim());
    });
    return found;
  }

  // Retry-After in milliseconds (seconds or an HTTP date), or 0.
  function retryAfter(response) {
    var value = response.headers.get("Retry-After");
    if (!value) return 0;
    var seconds = Number(value);
    if (!isNaN(seconds)) return Math.max(0, seconds * 1000);
    var at = Date.parse(value);
    return isNaN(at) ? 0 : Math.max(0, at - Date.now());
  }

  function isStream(response) {
    return (response.headers.get("Content-Type") || "").indexOf(STREAM_TYPE) === 0;
  }

  function firstLine(text) {
    return String(text || "").trim().split("\n")[0].slice(0, 300);
  }

  // 128 random bits as base64url: the tab's connection id, unguessable.
  function randomId() {
    var bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    var text = "";
    bytes.forEach(function (b) {
      text += String.fromCharCode(b);
    });
    return global.btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function storage() {
    try {
      return global.sessionStorage;
    } catch (err) {
      return null; // blocked by the browser's privacy settings
    }
  }

  /** Channels declared with ``{% sse_channels %}``: ``<script type="application/json" data-sse-channels>``. */
  function declaredChannels(root) {
    var names = [];
    root.querySelectorAll("script[data-sse-channels]").forEach(function (el) {
      var value = parse(el.textContent);
      if (Array.isArray(value)) names = names.concat(value);
    });
    return names;
  }

  /** Event names the page swaps declaratively: ``data-sse-swap="name other"``. */
  function swapNames(root) {
    var names = [];
    root.querySelectorAll("[data-sse-swap]").forEach(function (el) {
      names = names.concat(el.getAttribute("data-sse-swap").split(/\s+/));
    });
    return unique(names);
  }

  function swap(root, name, data, markup) {
    root.querySelectorAll("[data-sse-swap]").forEach(function (el) {
      if (el.getAttribute("data-sse-swap").split(/\s+/).indexOf(name) === -1) return;
      // Only verbatim markup is inserted as HTML; any JSON value, a string too, is text.
      var html = markup && typeof data === "string" ? data : null;
      var mode = el.getAttribute("data-sse-mode") || "inner";
      if (mode === "text" || html === null) {
        el.textContent = typeof data === "string" ? data : JSON.stringify(data);
      } else if (mode === "append") {
        el.insertAdjacentHTML("beforeend", html);
      } else if (mode === "prepend") {
        el.insertAdjacentHTML("afterbegin", html);
      } else if (mode === "outer") {
        el.outerHTML = html;
      } else {
        el.innerHTML = html;
      }
    });
  }

  /**
   * A stream on a set of channels. States: "connecting", "open",
   * "reconnecting", "denied" (the server refused: 400/401/403/404, a redirect
   * or an answer that is not an event stream; no retry), "revoked" (the server
   * closed the stream for good: ``stream-closed`` with ``reconnect: false``)
   * and "closed" (``close()`` was called).
   */
  function Connection(options) {
    this.options = assign({}, DEFAULTS, options);
    this.root = this.options.root || document;
    this.handlers = {};
    this.names = [];
    this.state = "idle";
    this.status = null;
    this.reason = "";
    this.attempts = 0;
    this.source = null;
    this.timer = null;
    this.leader = false;
    this.seen = [];
    this.lastId = "";
    this.opened = false;
    this.started = false;
    this.connectionId = randomId();
    // Presence channels' members, kept from the server's events: channel ->
    // {members: {key: member}, versions: {key: version}, version, counts}.
    this.presence = {};
    this.watchers = [];
  }

  Connection.prototype.on = function (name, handler) {
    (this.handlers[name] = this.handlers[name] || []).push(handler);
    this.listen([name]);
    return this;
  };

  Connection.prototype.off = function (name, handler) {
    var list = this.handlers[name] || [];
    var at = list.indexOf(handler);
    if (at !== -1) list.splice(at, 1);
    return this;
  };

  /** Start streaming; channels declared in the page are added to the configured ones. */
  Connection.prototype.start = function () {
    if (this.started) return this;
    this.started = true;
    var configured = unique(this.options.channels);
    this.channels = unique(configured.concat(declaredChannels(this.root))).sort();
    // The render-time position names exactly the configured channel set.
    this.position = this.channels.length === configured.length ? this.options.position : "";
    this.key = this.options.url + "?" + this.channels.join("&");
    this.listen(swapNames(this.root).concat(CONTROL_EVENTS));
    if (!this.channels.length) {
      this.setState("closed", { reason: "no channels declared" });
      return this;
    }
    this.setState("connecting");
    if (this.options.share && global.BroadcastChannel && global.navigator && navigator.locks) {
      this.share();
    } else {
      this.lead();
    }
    return this;
  };

  Connection.prototype.close = function () {
    this.disconnect();
    if (this.releaseLock) this.releaseLock();
    if (this.bus) this.bus.close();
    this.bus = null;
    this.setState("closed");
  };

  Connection.prototype.disconnect = function () {
    clearTimeout(this.timer);
    clearTimeout(this.settle);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
    if (this.probeAbort) this.probeAbort.abort();
    this.probeAbort = null;
    // A pending token request or probe from before must not act any more.
    this.generation = (this.generation || 0) + 1;
  };

  Connection.prototype.url = function (token) {
    var query = this.channels.map(function (c) {
      return "channel=" + encodeURIComponent(c);
    });
    var last = this.lastEventId();
    if (last) query.push("lastEventId=" + encodeURIComponent(last));
    if (token) query.push("token=" + encodeURIComponent(token));
    query.push("connection=" + this.connectionId);
    return this.options.url + (this.options.url.indexOf("?") === -1 ? "?" : "&") + query.join("&");
  };

  /** Where to resume from: this tab's last event on these channels, else the render-time position. */
  Connection.prototype.lastEventId = function () {
    var store = storage();
    return this.lastId || (store && store.getItem(STORAGE_PREFIX + this.key)) || this.position || "";
  };

  Connection.prototype.remember = function (id) {
    var store = storage();
    this.lastId = id;
    if (id && store) store.setItem(STORAGE_PREFIX + this.key, id);
  };

  Connection.prototype.credentials = function () {
    return this.options.withCredentials ? "include" : "same-origin";
  };

  // Tabs showing the same channels share one connection: the tab holding the
  // lock streams and relays over a BroadcastChannel, so many tabs do not run
  // into the browser's six HTTP/1.1 connections per origin.
  Connection.prototype.share = function () {
    var self = this;
    var name = "django-sse:" + this.key;
    this.bus = new BroadcastChannel(name);
    this.bus.onmessage = function (e) {
      self.relayed(e.data);
    };
    // "ask": every other tab answers with the names it listens for, so whichever
    // tab leads later streams the events of every tab.
    this.bus.postMessage({ type: "hello", names: this.names, ask: true });
    navigator.locks.request(name, function () {
      if (self.state === "closed") return null;
      return new Promise(function (resolve) {
        self.releaseLock = resolve;
        self.lead();
      });
    });
  };

  Connection.prototype.relayed = function (message) {
    if (message.type === "hello") {
      // Every tab keeps the names of all tabs: a follower that takes over
      // listens for them from its first connection.
      this.listen(message.names, true);
      if (message.ask && this.bus) this.bus.postMessage({ type: "hello", names: this.names });
      if (this.leader) this.broadcast({ type: "state", state: this.state, detail: this.detail() });
      // A tab that joins late starts from the leader's member lists.
      if (this.leader) this.sharePresence();
    } else if (!this.leader && message.type === "event") {
      this.deliver(message.name, message.data, message.id);
    } else if (!this.leader && message.type === "state") {
      this.setState(message.state, message.detail);
    }
  };

  Connection.prototype.broadcast = function (message) {
    if (this.bus && this.leader) this.bus.postMessage(message);
  };

  Connection.prototype.lead = function () {
    this.leader = true;
    this.connect();
  };

  Connection.prototype.listen = function (names, quiet) {
    var self = this;
    var added = (names || []).filter(function (name) {
      if (!name || self.names.indexOf(name) !== -1) return false;
      self.names.push(name);
      if (self.source) self.addListener(self.source, name);
      return true;
    });
    // A follower tells the leader which events it wants relayed.
    if (added.length && !quiet && this.bus && !this.leader) {
      this.bus.postMessage({ type: "hello", names: added });
    }
  };

  Connection.prototype.addListener = function (source, name) {
    var self = this;
    source.addEventListener(name, function (e) {
      if (source !== self.source) return;
      self.broadcast({ type: "event", name: name, data: e.data, id: e.lastEventId });
      self.deliver(name, e.data, e.lastEventId);
    });
  };

  Connection.prototype.connect = function () {
    var self = this;
    this.timer = null;
    if (!this.options.tokenUrl) {
      this.open(null);
      return;
    }
    var generation = this.generation;
    this.fetchToken().then(function (token) {
      if (generation === self.generation && token) self.open(token);
    });
  };

  // A fresh single-use stream token for every connection (the stream-token flow).
  // Resolves to the token, or to null after handling the failure.
  Connection.prototype.fetchToken = function () {
    var self = this;
    var generation = this.generation;
    var headers = assign({ "Content-Type": "application/x-www-form-urlencoded" }, this.options.tokenHeaders);
    var csrf = typeof this.options.csrfToken === "function" ? this.options.csrfToken() : this.options.csrfToken;
    // This page's own CSRF cookie goes only to its own origin.
    if (!csrf && sameOrigin(this.options.tokenUrl)) csrf = cookie("csrftoken");
    if (csrf) headers["X-CSRFToken"] = csrf;
    var body = this.channels.map(function (c) {
      return "channel=" + encodeURIComponent(c);
    });
    return fetch(this.options.tokenUrl, {
      method: "POST",
      headers: headers,
      body: body.join("&"),
      credentials: this.credentials(),
      cache: "no-store",
    })
      .then(function (response) {
        if (generation !== self.generation) return null;
        if (response.ok && !response.redirected) {
          return response.json().then(
            function (json) {
              if (json && typeof json.token === "string") return json.token;
              self.setState("denied", { status: response.status, reason: "no token in the answer" });
              return null;
            },
            function () {
              self.setState("denied", { status: response.status, reason: "the answer is not JSON" });
              return null;
            }
          );
        }
        return self.refused(response).then(function () {
          return null;
        });
      })
      .catch(function () {
        if (generation === self.generation) self.retry(null);
        return null;
      });
  };

  Connection.prototype.open = function (token) {
    var self = this;
    var source = new EventSource(this.url(token), { withCredentials: !!this.options.withCredentials });
    this.source = source;
    this.opened = false;
    this.names.forEach(function (name) {
      self.addListener(source, name);
    });
    source.onopen = function (event) {
      // A MessageEvent carries data: an event the server named "open", not the connection.
      if (source !== self.source || (event && typeof event.data === "string")) return;
      self.opened = true;
      self.setState("open");
      // The backoff starts over once a stream has held for a while, not at
      // once: a server that accepts and drops every stream still backs off.
      clearTimeout(self.settle);
      self.settle = setTimeout(function () {
        if (source === self.source) self.attempts = 0;
      }, Math.min(self.options.retryMax, Math.max(1000, self.options.retryBase * 10)));
    };
    source.onerror = function (event) {
      // Likewise an event named "error" is data, not a dropped connection.
      if (source !== self.source || (event && typeof event.data === "string")) return;
      // The helper reconnects itself, never the browser: the browser retries
      // every ``retry:`` ms in lockstep with every other client, without backoff.
      source.close();
      self.source = null;
      if (self.opened) {
        // A stream that ran dropped (a restart): come back soon, with jitter.
        self.retry(null);
      } else {
        // Refused or unreachable: find out which before trying again.
        self.probe();
      }
    };
  };

  // EventSource does not expose the status of a refused request: ask again
  // with fetch (read the head, then abort) to tell "denied" (stop) from
  // "unavailable" (back off, honour Retry-After, retry).
  Connection.prototype.probe = function () {
    var self = this;
    var generation = this.generation;
    var abort = global.AbortController ? new AbortController() : null;
    this.probeAbort = abort;
    var target = this.options.tokenUrl
      ? this.fetchToken().then(function (token) {
          return token ? self.url(token) : null;
        })
      : Promise.resolve(this.url());
    target
      .then(function (url) {
        if (!url || generation !== self.generation) return null;
        return fetch(url, {
          credentials: self.credentials(),
          signal: abort && abort.signal,
          cache: "no-store",
        }).then(function (response) {
          if (generation !== self.generation) return null;
          if (response.ok && isStream(response) && !response.redirected) {
            // It would stream now: the failure was passing.
            if (abort) abort.abort();
            self.retry(response.status);
            return null;
          }
          return self.refused(response, abort);
        });
      })
      .catch(function () {
        if (generation === self.generation) self.retry(null);
      });
  };

  // A response that is not a stream: stop (denied) or retry.
  Connection.prototype.refused = function (response, abort) {
    var self = this;
    var status = response.status;
    if (response.redirected && !(response.ok && isStream(response))) {
      // A login page (LoginRequiredMiddleware, a proxy's sign-in): retrying will not help.
      if (abort) abort.abort();
      this.setState("denied", { status: status, reason: "redirected to " + response.url });
      return Promise.resolve();
    }
    if (response.ok && !isStream(response)) {
      if (abort) abort.abort();
      var type = response.headers.get("Content-Type") || "no Content-Type";
      this.setState("denied", { status: status, reason: "not an event stream (" + type + ")" });
      return Promise.resolve();
    }
    if (STOP_STATUSES.indexOf(status) !== -1) {
      return response.text().then(function (text) {
        self.setState("denied", { status: status, reason: firstLine(text) });
      });
    }
    if (abort) abort.abort();
    this.retry(status, retryAfter(response));
    return Promise.resolve();
  };

  Connection.prototype.retry = function (status, notBefore) {
    if (this.state === "closed" || this.state === "denied" || this.state === "revoked") return;
    clearTimeout(this.timer);
    var ceiling = Math.min(this.options.retryMax, this.options.retryBase * Math.pow(2, this.attempts));
    // Full jitter in the upper half: clients that lost the same server spread out.
    var delay = ceiling / 2 + Math.random() * (ceiling / 2);
    if (notBefore) {
      // The server said when (Retry-After): never earlier, spread over a tenth more.
      delay = Math.max(delay, notBefore + Math.random() * (notBefore / 10));
    }
    this.attempts += 1;
    this.setState("reconnecting", { status: status, delay: Math.round(delay) });
    this.timer = setTimeout(this.connect.bind(this), delay);
  };

  /** Stop for good: the server said not to come back. */
  Connection.prototype.stop = function (state, detail) {
    this.disconnect();
    this.setState(state, detail);
  };

  Connection.prototype.deliver = function (name, raw, id) {
    if (id && CONTROL_EVENTS.indexOf(name) === -1 && id !== this.lastId) {
      // A stored event moves the position: its id is new, and one seen before
      // is a replayed duplicate. Ephemeral events repeat the stream's current
      // id, so an id equal to the last one is never a reason to drop an event.
      if (this.seen.indexOf(id) !== -1) return;
      this.seen.push(id);
      if (this.seen.length > SEEN_LIMIT) this.seen.shift();
      this.remember(id);
    }
    var decoded = decode(raw);
    var data = decoded.data;
    if (PRESENCE_EVENTS.indexOf(name) !== -1 && data && typeof data.channel === "string") {
      this.applyPresence(name, data);
    }
    var event = { name: name, data: data, raw: raw, id: id, markup: decoded.markup };
    if (name === "stream-reset") {
      // The stored position is useless now: a reload must not be reset again.
      var store = storage();
      if (store) store.removeItem(STORAGE_PREFIX + this.key);
      this.position = "";
      this.lastId = "";
      this.emit("sse:reset", { reason: data && data.reason });
    }
    if (name === "stream-closed" && this.leader) {
      var reason = data && typeof data.reason === "string" ? data.reason : "";
      if (data && data.reconnect === false) {
        // Revoked, logged out, password changed: coming back would be refused.
        this.stop("revoked", { reason: reason });
      } else if (this.source) {
        // Overflow, max age, shutdown: resume from the last id, with jitter.
        this.source.close();
        this.source = null;
        this.retry(null);
      }
    }
    swap(this.root, name, data, decoded.markup);
    (this.handlers[name] || []).slice().forEach(function (handler) {
      handler(data, event);
    });
    (this.handlers["*"] || []).slice().forEach(function (handler) {
      handler(data, event);
    });
  };

  /** Apply a ``presence`` snapshot or a join/leave, by version: events from
   * several server processes may arrive out of order (docs/presence.rst). */
  Connection.prototype.applyPresence = function (name, data) {
    var state = this.presence[data.channel];
    if (name === "presence") {
      state = this.presence[data.channel] = { members: {}, versions: {}, version: data.version || 0, counts: {} };
      (data.members || []).forEach(function (m) {
        state.members[m.key] = m.member;
      });
      state.counts = { users: data.users, streams: data.streams, anonymous: data.anonymous };
    } else {
      if (!state || typeof data.key !== "string") return;
      var known = Math.max(state.version, state.versions[data.key] || 0);
      if (!(data.version > known)) return; // older than what this page knows
      state.versions[data.key] = data.version;
      if (name === "presence.join") {
        state.members[data.key] = data.member;
      } else {
        delete state.members[data.key];
      }
      state.counts.users = Object.keys(state.members).length;
    }
    var self = this;
    this.watchers.slice().forEach(function (watcher) {
      if (watcher.channel === data.channel) watcher.update(name, data, self.members(data.channel));
    });
    renderPresence(this.root, data.channel, this.members(data.channel));
  };

  /** The current members of a presence channel: ``[{key, member}]``, or null before its snapshot. */
  Connection.prototype.members = function (channel) {
    var state = this.presence[channel];
    if (!state) return null;
    return Object.keys(state.members)
      .sort()
      .map(function (key) {
        return { key: key, member: state.members[key] };
      });
  };

  Connection.prototype.sharePresence = function () {
    var self = this;
    Object.keys(this.presence).forEach(function (channel) {
      var state = self.presence[channel];
      var snapshot = {
        channel: channel,
        members: self.members(channel),
        users: state.counts.users,
        streams: state.counts.streams,
        anonymous: state.counts.anonymous,
        version: Math.max.apply(null, [state.version].concat(Object.keys(state.versions).map(function (k) {
          return state.versions[k];
        }))),
      };
      self.broadcast({ type: "event", name: "presence", data: JSON.stringify(snapshot), id: "" });
    });
  };

  /**
   * Follow a presence channel: ``handlers.join(member, key)``,
   * ``handlers.leave(member, key)`` and ``handlers.change(members)`` with the
   * current list ``[{key, member}]``. Returns ``{members(), stop()}``.
   */
  Connection.prototype.watchPresence = function (channel, handlers) {
    var self = this;
    handlers = handlers || {};
    var watcher = {
      channel: channel,
      update: function (name, data, members) {
        if (name === "presence.join" && handlers.join) handlers.join(data.member, data.key);
        if (name === "presence.leave" && handlers.leave) handlers.leave(data.member, data.key);
        if (handlers.change) handlers.change(members);
      },
    };
    this.watchers.push(watcher);
    var now = this.members(channel);
    if (now && handlers.change) handlers.change(now);
    return {
      members: function () {
        return self.members(channel) || [];
      },
      stop: function () {
        var at = self.watchers.indexOf(watcher);
        if (at !== -1) self.watchers.splice(at, 1);
      },
    };
  };

  Connection.prototype.detail = function () {
    return { status: this.status, reason: this.reason, leader: this.leader };
  };

  Connection.prototype.setState = function (state, detail) {
    detail = detail || {};
    var previous = this.state;
    this.state = state;
    this.status = detail.status == null ? null : detail.status;
    this.reason = detail.reason || "";
    var elements = [document.documentElement];
    this.root.querySelectorAll("[data-sse-state]").forEach(function (el) {
      if (el !== document.documentElement) elements.push(el);
    });
    elements.forEach(function (el) {
      el.setAttribute("data-sse-state", state);
    });
    this.broadcast({ type: "state", state: state, detail: this.detail() });
    // Every retry is news (its delay), even when the state does not change.
    if (previous !== state || detail.delay != null) {
      this.emit("sse:state", assign({ state: state, previous: previous }, this.detail(), detail));
      this.emit("sse:" + state, assign({}, this.detail(), detail));
    }
  };

  Connection.prototype.emit = function (type, detail) {
    document.dispatchEvent(new CustomEvent(type, { detail: detail }));
  };

  /** Fill ``[data-sse-presence="channel"]`` lists: one ``<li>`` per member,
   * its ``data-sse-presence-field`` (default "name") as text, never markup. */
  function renderPresence(root, channel, members) {
    root.querySelectorAll("[data-sse-presence]").forEach(function (el) {
      if (el.getAttribute("data-sse-presence") !== channel) return;
      var field = el.getAttribute("data-sse-presence-field") || "name";
      var self = el.getAttribute("data-sse-presence-self");
      var shown = (members || []).filter(function (m) {
        return m.key !== self;
      });
      var items = shown.map(function (m) {
        var li = document.createElement("li");
        var value = m.member && m.member[field] != null ? m.member[field] : "";
        li.textContent = typeof value === "string" ? value : JSON.stringify(value);
        li.setAttribute("data-key", m.key);
        return li;
      });
      if (!items.length && el.hasAttribute("data-sse-presence-empty")) {
        var empty = document.createElement("li");
        empty.textContent = el.getAttribute("data-sse-presence-empty");
        empty.setAttribute("data-empty", "");
        items.push(empty);
      }
      el.replaceChildren.apply(el, items);
      el.setAttribute("data-sse-presence-count", String(shown.length));
    });
  }

  // Same-origin URLs only: the connection id is never sent to another site.
  function withConnection(connection, url, headers) {
    if (connection && sameOrigin(url)) headers[CONNECTION_HEADER] = connection.connectionId;
    return headers;
  }

  function readConfig() {
    var el = document.getElementById("django-sse-config");
    return el ? parse(el.textContent) : null;
  }

  var config = readConfig();
  var page = config ? new Connection(config) : null;

  var DjangoSSE = {
    Connection: Connection,
    /** ``url`` if relative or http(s), else null: check a URL from an event before using it as an href. */
    safeUrl: safeUrl,
    /** The page's connection, configured by ``{% sse_script %}``; null without it. */
    connection: page,
    /** A connection of your own: ``DjangoSSE.connect({url, channels})``. */
    connect: function (options) {
      return new Connection(options).start();
    },
    on: function (name, handler) {
      if (!page) throw new Error("django-sse: no {% sse_script %} configuration on this page");
      page.on(name, handler);
      return DjangoSSE;
    },
    off: function (name, handler) {
      if (page) page.off(name, handler);
      return DjangoSSE;
    },
    close: function () {
      if (page) page.close();
    },
    /** This tab's connection id (also ``X-SSE-Connection``), or null without a page connection. */
    connectionId: page ? page.connectionId : null,
    /** ``fetch()`` with this tab's ``X-SSE-Connection`` header (same origin only). */
    fetch: function (input, init) {
      init = assign({}, init);
      var url = typeof input === "string" ? input : input.url;
      var headers = new Headers(init.headers || (typeof input === "string" ? undefined : input.headers));
      var extra = withConnection(page, url, {});
      Object.keys(extra).forEach(function (k) {
        headers.set(k, extra[k]);
      });
      init.headers = headers;
      return global.fetch(input, init);
    },
    /** Follow a presence channel of the page: ``DjangoSSE.presence("ticket:42", {join, leave, change})``. */
    presence: function (channel, handlers) {
      if (!page) throw new Error("django-sse: no {% sse_script %} configuration on this page");
      return page.watchPresence(channel, handlers);
    },
  };
  global.DjangoSSE = DjangoSSE;

  // ---------------------------------------------------------------------------
  // Inbox: DjangoSSE.inbox keeps {% sse_inbox_badge %} and {% sse_inbox_list %}
  // live from the user's channel. Every server event carries the unread count
  // as a value, so applying events in order always ends on the server's count.
  // ---------------------------------------------------------------------------

  var ITEMS_KEPT = 500;

  function readButton() {
    var button = document.createElement("button");
    button.type = "button";
    button.setAttribute("data-sse-inbox-read", "");
    button.textContent = "Mark read";
    return button;
  }

  function isRead(item) {
    return item.read != null ? !!item.read : !!item.read_at;
  }

  function Inbox(connection, root) {
    this.connection = connection;
    this.root = root || document;
    this.count = 0;
    this.items = [];
    this.handlers = [];
    this.events = 0; // server events seen: a fetch answer older than one is stale
    this.url = connection ? connection.options.url + "inbox/" : "/sse/inbox/";
    // "inbox" (django_sse's own) or "notifications" (the django-notifications bridge).
    this.source = "inbox";
  }

  // The server-rendered state: the badge's count and the list's rows.
  Inbox.prototype.read = function () {
    var self = this;
    var badge = this.root.querySelector("[data-sse-inbox-badge]");
    var list = this.root.querySelector("[data-sse-inbox-list]");
    var anchor = badge || list;
    if (anchor) {
      this.url = anchor.getAttribute("data-sse-inbox-url") || this.url;
      this.source = anchor.getAttribute("data-sse-inbox-source") || this.source;
    }
    if (badge) this.count = Number(badge.getAttribute("data-count")) || 0;
    if (list) {
      list.querySelectorAll("li[data-id]").forEach(function (li) {
        var id = Number(li.getAttribute("data-id"));
        if (!self.find(id)) self.items.push({ id: id, read: li.getAttribute("data-read") === "true" });
      });
    }
  };

  Inbox.prototype.start = function () {
    var self = this;
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", function () {
        self.read();
      });
    } else {
      this.read();
    }
    if (!this.connection) return this;
    this.connection.on("notification", function (data) {
      if (self.source === "inbox" && data && typeof data.id === "number") {
        self.apply({ action: "new", item: data, unread: data.unread });
      }
    });
    this.connection.on("inbox", function (data) {
      if (self.source === "inbox" && data && typeof data === "object") self.apply(data);
    });
    this.connection.on("live-notify", function (data) {
      if (self.source === "notifications" && data && typeof data === "object") self.apply(data);
    });
    // After a reset, and once the stream is open (the render-time count may
    // predate the render-time position, and a tab that joins a shared
    // connection hears no replay), ask the server once.
    var synced = false;
    var shown = function () {
      return !!self.root.querySelector("[data-sse-inbox-badge], [data-sse-inbox-list]");
    };
    document.addEventListener("sse:reset", function () {
      if (shown()) self.refresh().catch(function () {});
    });
    document.addEventListener("sse:open", function () {
      if (!synced && shown()) {
        synced = true;
        self.refresh().catch(function () {});
      }
    });
    this.root.addEventListener("click", function (e) {
      var target = e.target && e.target.closest ? e.target.closest("[data-sse-inbox-read], [data-sse-inbox-read-all]") : null;
      if (!target) return;
      if (target.hasAttribute("data-sse-inbox-read-all")) {
        self.markAllRead();
        return;
      }
      var li = target.closest("li[data-id]");
      if (li) self.markRead([Number(li.getAttribute("data-id"))]);
    });
    return this;
  };

  Inbox.prototype.find = function (id) {
    for (var i = 0; i < this.items.length; i++) if (this.items[i].id === id) return this.items[i];
    return null;
  };

  /** Apply one change: {action: "new" | "read" | "read_all" | "delete" | "sync", ids, item, unread}. */
  Inbox.prototype.apply = function (change, fromFetch) {
    var self = this;
    if (!fromFetch) this.events += 1;
    if (typeof change.unread === "number") this.count = change.unread;
    var ids = Array.isArray(change.ids) ? change.ids : [];
    if (change.action === "new" && change.item && !this.find(change.item.id)) {
      var item = assign({}, change.item, { read: isRead(change.item) });
      delete item.unread;
      this.items.unshift(item);
    } else if (change.action === "read") {
      this.items.forEach(function (item) {
        if (ids.indexOf(item.id) !== -1) item.read = true;
      });
    } else if (change.action === "unread") {
      this.items.forEach(function (item) {
        if (ids.indexOf(item.id) !== -1) item.read = false;
      });
    } else if (change.action === "read_all") {
      this.items.forEach(function (item) {
        item.read = true;
      });
    } else if (change.action === "delete") {
      this.items = this.items.filter(function (item) {
        return ids.indexOf(item.id) === -1;
      });
    } else if (change.action === "sync" && !fromFetch) {
      this.refresh().catch(function () {});
    }
    // A page open for days keeps the newest items only.
    if (this.items.length > ITEMS_KEPT) this.items.length = ITEMS_KEPT;
    this.render(change);
    this.handlers.slice().forEach(function (handler) {
      handler(self, change);
    });
    document.dispatchEvent(new CustomEvent("sse:inbox", { detail: { count: this.count, change: change } }));
  };

  Inbox.prototype.render = function (change) {
    var self = this;
    this.root.querySelectorAll("[data-sse-inbox-badge]").forEach(function (el) {
      el.textContent = String(self.count);
      el.setAttribute("data-count", String(self.count));
    });
    this.root.querySelectorAll("[data-sse-inbox-list]").forEach(function (list) {
      self.renderList(list, change);
    });
  };

  Inbox.prototype.renderList = function (list, change) {
    var limit = Number(list.getAttribute("data-limit")) || 20;
    var unreadOnly = list.hasAttribute("data-unread-only");
    var empty = list.querySelector("[data-sse-inbox-empty]");
    var shown = this.items.filter(function (item) {
      return !unreadOnly || !item.read;
    });
    var keep = {};
    shown.slice(0, limit).forEach(function (item) {
      keep[item.id] = item;
    });
    list.querySelectorAll("li[data-id]").forEach(function (li) {
      var item = keep[Number(li.getAttribute("data-id"))];
      if (!item) {
        li.remove();
        return;
      }
      li.setAttribute("data-read", item.read ? "true" : "false");
      var button = li.querySelector("[data-sse-inbox-read]");
      if (item.read && button) button.remove();
      if (!item.read && !button) li.appendChild(readButton());
      delete keep[item.id];
    });
    // What is left is new here: newest first, before the rows already shown.
    var self = this;
    shown.slice(0, limit).forEach(function (item) {
      if (!keep[item.id] || item.message == null) return;
      var li = self.itemElement(item);
      var rows = list.querySelectorAll("li[data-id]");
      var before = null;
      for (var i = 0; i < rows.length; i++) {
        if (Number(rows[i].getAttribute("data-id")) < item.id) {
          before = rows[i];
          break;
        }
      }
      list.insertBefore(li, before || empty || null);
    });
    if (empty) empty.hidden = list.querySelectorAll("li[data-id]").length > 0;
  };

  // Text only, never markup: the message is user data. The link must be
  // relative or on this origin (the server checked it too).
  Inbox.prototype.itemElement = function (item) {
    var li = document.createElement("li");
    li.className = "sse-inbox-item sse-level-" + String(item.level || "info").replace(/[^a-z0-9_-]/gi, "");
    li.setAttribute("data-id", String(item.id));
    li.setAttribute("data-read", item.read ? "true" : "false");
    var href = safeUrl(item.url);
    var text = document.createElement(href ? "a" : "span");
    text.className = "sse-inbox-message";
    text.textContent = String(item.message);
    if (href) text.setAttribute("href", href);
    li.appendChild(text);
    if (item.created) {
      var time = document.createElement("time");
      time.setAttribute("datetime", String(item.created));
      var when = new Date(item.created);
      time.textContent = isNaN(when.getTime()) ? "" : when.toLocaleString();
      li.appendChild(document.createTextNode(" "));
      li.appendChild(time);
    }
    if (!item.read) {
      li.appendChild(document.createTextNode(" "));
      li.appendChild(readButton());
    }
    return li;
  };

  Inbox.prototype.request = function (path, body) {
    var self = this;
    var seen = this.events;
    var options = { credentials: "same-origin", cache: "no-store", headers: {} };
    if (body) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      // The connection's csrfToken option, a {% csrf_token %} field of the page
      // (CSRF_COOKIE_HTTPONLY hides the cookie), or the csrftoken cookie.
      var given = this.connection && this.connection.options.csrfToken;
      if (typeof given === "function") given = given();
      var field = document.querySelector("input[name=csrfmiddlewaretoken]");
      var csrf = given || (field && field.value) || cookie("csrftoken");
      // Never to another origin: a badge planted with a foreign
      // data-sse-inbox-url must not collect the token.
      if (csrf && sameOrigin(this.url + path)) options.headers["X-CSRFToken"] = csrf;
      options.body = JSON.stringify(body);
    }
    return fetch(this.url + path, options).then(function (response) {
      if (!response.ok) throw new Error("inbox request failed: " + response.status);
      return response.json().then(function (json) {
        // An event that arrived meanwhile is as new as this answer or newer.
        return { json: json, fresh: self.events === seen };
      });
    });
  };

  /** Fetch the count (and the list, when the page shows one) from the server. */
  Inbox.prototype.refresh = function () {
    var self = this;
    var list = this.root.querySelector("[data-sse-inbox-list]");
    var path = list ? "?limit=" + (Number(list.getAttribute("data-limit")) || 20) : "count/";
    if (list && list.hasAttribute("data-unread-only")) path += "&unread=1";
    return this.request(path).then(function (answer) {
      if (!answer.fresh) return self;
      if (answer.json.items) {
        var byId = {};
        self.items.forEach(function (item) {
          byId[item.id] = item;
        });
        self.items = answer.json.items.map(function (item) {
          return assign(byId[item.id] || {}, item, { read: isRead(item) });
        });
      }
      self.apply({ action: "refresh", unread: answer.json.unread }, true);
      return self;
    });
  };

  Inbox.prototype.change = function (path, body) {
    var self = this;
    return this.request(path, body).then(function (answer) {
      // The change's own event updates every tab; this answer covers a tab
      // whose stream is down, unless an event already said something newer.
      if (answer.fresh && !(self.connection && self.connection.state === "open")) {
        self.apply({ action: path === "read-all/" ? "read_all" : path === "read/" ? "read" : "delete", ids: body.ids, unread: answer.json.unread }, true);
      }
      return answer.json;
    });
  };

  Inbox.prototype.markRead = function (ids) {
    return this.change("read/", { ids: ids });
  };

  Inbox.prototype.markAllRead = function () {
    return this.change("read-all/", {});
  };

  Inbox.prototype.delete = function (ids) {
    return this.change("delete/", { ids: ids });
  };

  /** ``handler(inbox, change)`` after every change of count or items. */
  Inbox.prototype.on = function (handler) {
    this.handlers.push(handler);
    return this;
  };

  DjangoSSE.Inbox = Inbox;
  DjangoSSE.inbox = new Inbox(page).start();
  // ------------------------------- end of Inbox -------------------------------

  // htmx requests of this page carry the tab's connection id too.
  document.addEventListener("htmx:configRequest", function (event) {
    var detail = event.detail || {};
    if (detail.headers) withConnection(page, detail.path || "", detail.headers);
  });

  if (page && config.autostart !== false) {
    // Start once the page is parsed, so channels and swap targets declared
    // after this script are seen, and handlers added by later scripts are set.
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", function () {
        page.start();
      });
    } else {
      page.start();
    }
  }
})(window);
