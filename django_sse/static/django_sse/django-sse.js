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
  // Events the server sends itself; never dropped as duplicates.
  var CONTROL_EVENTS = ["stream-reset", "stream-closed", "snapshot"];
  var STORAGE_PREFIX = "django-sse:last-event-id:";
  var SEEN_LIMIT = 500;
  var DEFAULTS = {
    url: "/sse/",
    channels: [],
    position: "",
    share: true,
    retryBase: 1000,
    retryMax: 30000,
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
    try {
      return JSON.parse(text);
    } catch (err) {
      return text;
    }
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

  function swap(root, name, data) {
    root.querySelectorAll("[data-sse-swap]").forEach(function (el) {
      if (el.getAttribute("data-sse-swap").split(/\s+/).indexOf(name) === -1) return;
      var html = typeof data === "string" ? data : null;
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
   * "reconnecting", "denied" (the server refused: 400/401/403/404, no retry)
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
    this.started = false;
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
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
    if (this.probeAbort) this.probeAbort.abort();
  };

  Connection.prototype.url = function () {
    var query = this.channels.map(function (c) {
      return "channel=" + encodeURIComponent(c);
    });
    var last = this.lastEventId();
    if (last) query.push("lastEventId=" + encodeURIComponent(last));
    return this.options.url + (this.options.url.indexOf("?") === -1 ? "?" : "&") + query.join("&");
  };

  /** Where to resume from: this tab's last event on these channels, else the render-time position. */
  Connection.prototype.lastEventId = function () {
    var store = storage();
    return (store && store.getItem(STORAGE_PREFIX + this.key)) || this.position || "";
  };

  Connection.prototype.remember = function (id) {
    var store = storage();
    if (id && store) store.setItem(STORAGE_PREFIX + this.key, id);
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
    this.bus.postMessage({ type: "hello", names: this.names });
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
      if (!this.leader) return;
      this.listen(message.names);
      this.broadcast({ type: "state", state: this.state, detail: this.detail() });
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

  Connection.prototype.listen = function (names) {
    var self = this;
    var added = (names || []).filter(function (name) {
      if (!name || self.names.indexOf(name) !== -1) return false;
      self.names.push(name);
      if (self.source) self.addListener(self.source, name);
      return true;
    });
    // A follower tells the leader which events it wants relayed.
    if (added.length && this.bus && !this.leader) this.bus.postMessage({ type: "hello", names: added });
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
    var source = new EventSource(this.url());
    this.source = source;
    this.names.forEach(function (name) {
      self.addListener(source, name);
    });
    source.onopen = function () {
      if (source !== self.source) return;
      self.attempts = 0;
      self.setState("open");
    };
    source.onerror = function () {
      if (source !== self.source) return;
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (a non-200 answer, or a response that is not a stream).
        self.source = null;
        self.probe();
      } else {
        // The browser reconnects on its own, sending Last-Event-ID.
        self.setState("reconnecting");
      }
    };
  };

  // EventSource does not expose the status of a refused request: ask again
  // with fetch to tell "denied" (stop) from "unavailable" (back off, retry).
  Connection.prototype.probe = function () {
    var self = this;
    var abort = global.AbortController ? new AbortController() : null;
    this.probeAbort = abort;
    fetch(this.url(), { credentials: "same-origin", signal: abort && abort.signal, cache: "no-store" })
      .then(function (response) {
        if (STOP_STATUSES.indexOf(response.status) === -1) {
          if (abort) abort.abort();
          self.retry(response.status);
          return null;
        }
        return response.text().then(function (text) {
          self.setState("denied", { status: response.status, reason: text.trim() });
        });
      })
      .catch(function () {
        if (self.state !== "closed") self.retry(null);
      });
  };

  Connection.prototype.retry = function (status) {
    if (this.state === "closed" || this.state === "denied") return;
    var ceiling = Math.min(this.options.retryMax, this.options.retryBase * Math.pow(2, this.attempts));
    // Full jitter in the upper half: clients that lost the same server spread out.
    var delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempts += 1;
    this.setState("reconnecting", { status: status, delay: Math.round(delay) });
    this.timer = setTimeout(this.connect.bind(this), delay);
  };

  Connection.prototype.deliver = function (name, raw, id) {
    if (id && CONTROL_EVENTS.indexOf(name) === -1) {
      // Ephemeral events repeat their stream's id, so the id alone is not enough.
      var key = id + "\n" + name + "\n" + raw;
      if (this.seen.indexOf(key) !== -1) return;
      this.seen.push(key);
      if (this.seen.length > SEEN_LIMIT) this.seen.shift();
      this.remember(id);
    }
    var data = parse(raw);
    var event = { name: name, data: data, raw: raw, id: id };
    if (name === "stream-reset") {
      // The stored position is useless now: a reload must not be reset again.
      var store = storage();
      if (store) store.removeItem(STORAGE_PREFIX + this.key);
      this.position = "";
      this.emit("sse:reset", { reason: data && data.reason });
    }
    swap(this.root, name, data);
    (this.handlers[name] || []).slice().forEach(function (handler) {
      handler(data, event);
    });
    (this.handlers["*"] || []).slice().forEach(function (handler) {
      handler(data, event);
    });
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

  function readConfig() {
    var el = document.getElementById("django-sse-config");
    return el ? parse(el.textContent) : null;
  }

  var config = readConfig();
  var page = config ? new Connection(config) : null;

  var DjangoSSE = {
    Connection: Connection,
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
  };
  global.DjangoSSE = DjangoSSE;

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
