// A small fake browser for node's test runner: just the DOM, storage, timers, fetch, beacons and
// IntersectionObserver the snippet uses, each recording what the snippet did with it. Time only
// moves when a test calls clock.tick().

import { webcrypto } from "node:crypto";

import { createOfferwise } from "../src/offerwise.js";

export const settle = () => new Promise((resolve) => setImmediate(resolve));

export class Clock {
  constructor(start = 1_700_000_000_000) {
    this.now = start;
    this.timers = new Map();
    this.nextId = 1;
  }
  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + Math.max(0, ms || 0), fn });
    return id;
  }
  clearTimeout(id) {
    this.timers.delete(id);
  }
  // Moves time forward, running due timers in order and letting promises settle between them.
  async tick(ms) {
    const end = this.now + ms;
    await settle();
    for (;;) {
      let due = null;
      for (const [id, t] of this.timers) if (t.at <= end && (!due || t.at < due[1].at)) due = [id, t];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

export class Storage {
  constructor() {
    this.data = new Map();
  }
  getItem(k) {
    return this.data.has(k) ? this.data.get(k) : null;
  }
  setItem(k, v) {
    this.data.set(k, String(v));
  }
  removeItem(k) {
    this.data.delete(k);
  }
}

class Target {
  constructor() {
    this.listeners = {};
  }
  addEventListener(type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  }
  removeEventListener(type, fn) {
    this.listeners[type] = (this.listeners[type] || []).filter((f) => f !== fn);
  }
  dispatchEvent(event) {
    if (!event.target) event.target = this;
    (this.listeners[event.type] || []).slice().forEach((fn) => fn.call(this, event));
    if (event.bubbles && this.parentNode) this.parentNode.dispatchEvent(event);
    return !event.defaultPrevented;
  }
}

export class FakeEvent {
  constructor(type, init = {}) {
    this.type = type;
    this.bubbles = !!init.bubbles;
    this.detail = init.detail;
    this.defaultPrevented = false;
  }
  preventDefault() {
    this.defaultPrevented = true;
  }
}

// One compound selector: tag, #id, .class and [attr] / [attr="value"] parts.
function matches(el, selector) {
  const parts = selector.match(/^[a-z]+|#[\w-]+|\.[\w-]+|\[[^\]]+\]/gi) || [];
  return parts.every((p) => {
    if (p[0] === "#") return el.getAttribute("id") === p.slice(1);
    if (p[0] === ".") return (el.getAttribute("class") || "").split(/\s+/).includes(p.slice(1));
    if (p[0] === "[") {
      const [, name, value] = p.match(/^\[([\w-]+)(?:="?([^"]*)"?)?\]$/);
      return value === undefined ? el.hasAttribute(name) : el.getAttribute(name) === value;
    }
    return el.tagName === p.toUpperCase();
  });
}

const REFLECTED = ["id", "src", "href", "alt", "type", "name"];

export class Element extends Target {
  constructor(doc, tag) {
    super();
    this.ownerDocument = doc;
    this.tagName = tag.toUpperCase();
    this.attributes = new Map();
    this.children = [];
    this.parentNode = null;
    this.text = "";
    if (this.tagName === "TEMPLATE") this.content = new Element(doc, "#fragment");
    for (const name of REFLECTED) {
      Object.defineProperty(this, name, {
        get: () => this.getAttribute(name) || "",
        set: (v) => this.setAttribute(name, v),
      });
    }
  }
  setAttribute(k, v) {
    this.attributes.set(k, String(v));
  }
  getAttribute(k) {
    return this.attributes.has(k) ? this.attributes.get(k) : null;
  }
  hasAttribute(k) {
    return this.attributes.has(k);
  }
  removeAttribute(k) {
    this.attributes.delete(k);
  }
  get className() {
    return this.getAttribute("class") || "";
  }
  set className(v) {
    this.setAttribute("class", v);
  }
  get classList() {
    return {
      add: (c) => {
        if (!this.classList.contains(c)) this.className = (this.className + " " + c).trim();
      },
      contains: (c) => this.className.split(/\s+/).includes(c),
    };
  }
  get textContent() {
    return this.text + this.children.map((c) => c.textContent).join("");
  }
  set textContent(v) {
    this.children.forEach((c) => (c.parentNode = null));
    this.children = [];
    this.text = String(v);
  }
  get firstElementChild() {
    return this.children[0] || null;
  }
  get isConnected() {
    let el = this;
    while (el.parentNode) el = el.parentNode;
    return el === this.ownerDocument;
  }
  appendChild(child) {
    if (child.parentNode) child.remove();
    child.parentNode = this;
    this.children.push(child);
    return child;
  }
  remove() {
    if (!this.parentNode) return;
    this.parentNode.children = this.parentNode.children.filter((c) => c !== this);
    this.parentNode = null;
  }
  cloneNode(deep) {
    const copy = new Element(this.ownerDocument, this.tagName);
    this.attributes.forEach((v, k) => copy.setAttribute(k, v));
    copy.text = this.text;
    if (deep) this.children.forEach((c) => copy.appendChild(c.cloneNode(true)));
    return copy;
  }
  querySelectorAll(selector) {
    const steps = selector.trim().split(/\s+/);
    const out = [];
    const walk = (el) => {
      el.children.forEach((c) => {
        if (matchesPath(c, steps, this)) out.push(c);
        walk(c);
      });
    };
    walk(this);
    return out;
  }
  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }
  click() {
    this.dispatchEvent(new FakeEvent("click", { bubbles: true }));
  }
}

// "a b c": c matches, and b and a match ancestors in order, below `root`.
function matchesPath(el, steps, root) {
  if (!matches(el, steps[steps.length - 1])) return false;
  let i = steps.length - 2;
  for (let p = el.parentNode; i >= 0 && p && p !== root; p = p.parentNode) if (matches(p, steps[i])) i--;
  return i < 0;
}

export class Document extends Element {
  constructor() {
    super(null, "#document");
    this.ownerDocument = this;
    this.readyState = "complete";
    this.visibilityState = "visible";
    this.referrer = "";
    this.currentScript = null;
    this.body = this.appendChild(this.createElement("body"));
  }
  createElement(tag) {
    return new Element(this, tag);
  }
  get isConnected() {
    return true;
  }
}

// IntersectionObserver whose observations the test drives: observers.show(el, ratio).
export function intersectionObservers() {
  const all = [];
  class IntersectionObserver {
    constructor(callback, options) {
      this.callback = callback;
      this.options = options;
      this.targets = new Set();
      all.push(this);
    }
    observe(el) {
      this.targets.add(el);
    }
    unobserve(el) {
      this.targets.delete(el);
    }
    disconnect() {
      this.targets.clear();
    }
  }
  return {
    IntersectionObserver,
    all,
    show(el, ratio) {
      all.forEach((o) => {
        if (o.targets.has(el))
          o.callback([{ target: el, intersectionRatio: ratio, isIntersecting: ratio > 0 }], o);
      });
    },
    watching(el) {
      return all.some((o) => o.targets.has(el));
    },
  };
}

export function response(status, body, headers = {}) {
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: { get: (k) => headers[k] ?? headers[k.toLowerCase()] ?? null },
    json: () => Promise.resolve(body),
  };
}

export const OFFERS = [
  {
    product_id: "p1",
    name: "Tent",
    price: 199.5,
    url: "https://shop.example/p1",
    image_url: "https://shop.example/p1.jpg",
    reason: "Popular near you",
    token: "tok-p1",
  },
  {
    product_id: "p2",
    name: "Stove",
    price: 49,
    url: "https://shop.example/p2",
    image_url: null,
    reason: "Often bought together",
    token: "tok-p2",
  },
  {
    product_id: "p3",
    name: "Lamp",
    price: 20,
    url: "javascript:alert(1)",
    image_url: "javascript:x",
    reason: "Trending",
    token: "tok-p3",
  },
];

// A page with its own window, document and navigator; storage can be shared with an earlier
// page of the same tab (`from`). `answer(url, init)` answers fetch; the default accepts.
export function makeBrowser({ from, signals = {}, answer } = {}) {
  const clock = from ? from.clock : new Clock();
  const fetches = [];
  const beacons = [];
  const warnings = [];
  const observers = intersectionObservers();
  const d = new Document();
  const w = new Target();
  const respond =
    answer ||
    ((url, init) =>
      url.includes("/v1/recommend")
        ? response(200, { offers: OFFERS, source: "popularity", profile: !url.includes("dnt=true") })
        : response(200, { accepted: JSON.parse(init.body).events.length, duplicates: 0, rejected: [] }));
  Object.assign(w, {
    Date: { now: () => clock.now },
    setTimeout: (fn, ms) => clock.setTimeout(fn, ms),
    clearTimeout: (id) => clock.clearTimeout(id),
    sessionStorage: from ? from.w.sessionStorage : new Storage(),
    localStorage: from ? from.w.localStorage : new Storage(),
    crypto: webcrypto,
    IntersectionObserver: observers.IntersectionObserver,
    CustomEvent: FakeEvent,
    location: { href: "https://shop.example/tents?utm=x" },
    console: { warn: (...a) => warnings.push(a) },
    fetch: (url, init = {}) => {
      fetches.push({ url, init });
      return Promise.resolve(respond(url, init));
    },
  });
  const n = {
    sendBeacon: (url, body) => {
      beacons.push({ url, body });
      return true;
    },
    ...signals,
  };
  // Every batch that left the page, by beacon or fetch, parsed.
  const batches = () =>
    [
      ...beacons.map((b) => b.body),
      ...fetches.filter((f) => f.url.endsWith("/v1/collect")).map((f) => f.init.body),
    ].map((body) => JSON.parse(body));
  const events = () => batches().flatMap((b) => b.events);
  return { w, d, n, clock, fetches, beacons, warnings, observers, batches, events };
}

export const CONFIG = { site: "ow_site_test", endpoint: "https://api.example" };

// The snippet on a fake page (createOfferwise, as boot() would call it).
export function start(browser, config = {}, random = () => 0) {
  return createOfferwise({
    w: browser.w,
    d: browser.d,
    n: browser.n,
    config: { ...CONFIG, ...config },
    random,
  });
}
