// The offers widget: renders offers into every [data-offerwise-placement] element and reports
// what the visitor really saw and clicked.
//
//   <div data-offerwise-placement="sidebar" data-offerwise-count="3"
//        data-offerwise-exclude="p1,p2" data-offerwise-template="#my-offer"></div>
//
// Each offer is a link (class offerwise-offer) holding the image, name, price and the reason the
// service gave, in divs (offerwise-name, -price, -reason): readable one per line on a page
// without styles, and no stylesheet of ours for a shop to fight or its CSP to block. A page may
// bring its own markup: data-offerwise-template names a <template> whose first element is
// cloned per offer, its [data-offerwise-field] elements filled (name, price, reason, category:
// text; image: src; url: href).
//
// An impression counts only when at least half of the offer stays in view for one second
// (IntersectionObserver), once per offer token; a browser without IntersectionObserver counts
// none rather than guess. A click counts once per token and is sent at once with sendBeacon,
// since the link usually leaves the page. Both events carry the token, product and placement.

import { report, safeUrl } from "./util.js";

const SEEN_RATIO = 0.5;
export const SEEN_MS = 1000;
const FIELDS = ["name", "price", "reason", "category"];

export function createWidget({ w, d, recommend, track, flush, currency, extra }) {
  const counted = {}; // "impression:<token>" / "click:<token>" -> true
  const watched = new Map(); // offer element -> {offer, placement, timer}
  const lists = new Map(); // placement element -> its list of offers
  let observer = null;

  function once(kind, offer, placement) {
    const key = kind + ":" + (offer.token || offer.product_id + "@" + placement);
    if (counted[key]) return;
    counted[key] = true;
    const props = { product_id: offer.product_id, placement };
    if (offer.token) props.token = offer.token;
    track(kind, props);
  }

  function seen(entries) {
    entries.forEach((entry) => {
      const item = watched.get(entry.target);
      if (!item) return;
      const inView = entry.isIntersecting && entry.intersectionRatio >= SEEN_RATIO;
      if (inView && !item.timer) {
        const check = () => {
          item.timer = null;
          try {
            if (!entry.target.isConnected) return unwatch(entry.target);
            // A hidden tab shows nothing: look again once it may be visible.
            if (d.visibilityState === "hidden") return (item.timer = w.setTimeout(check, SEEN_MS));
            once("offer_impression", item.offer, item.placement);
            unwatch(entry.target);
          } catch (e) {
            report(w, e);
          }
        };
        item.timer = w.setTimeout(check, SEEN_MS);
      } else if (!inView && item.timer) {
        w.clearTimeout(item.timer);
        item.timer = null;
      }
    });
  }

  function watch(el, offer, placement) {
    if (!observer && w.IntersectionObserver) {
      observer = new w.IntersectionObserver(seen, { threshold: [0, SEEN_RATIO] });
    }
    if (!observer) return;
    watched.set(el, { offer, placement, timer: null });
    observer.observe(el);
  }

  function unwatch(el) {
    const item = watched.get(el);
    if (!item) return;
    if (item.timer) w.clearTimeout(item.timer);
    watched.delete(el);
    if (observer) observer.unobserve(el);
  }

  function price(value) {
    if (typeof value !== "number") return "";
    try {
      if (currency) return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
    } catch (e) {
      /* an unknown currency code: plain number below */
    }
    return value.toFixed(2);
  }

  function part(tag, cls, text) {
    const el = d.createElement(tag);
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function defaultCard(offer) {
    const a = d.createElement("a");
    const image = safeUrl(offer.image_url);
    if (image) {
      const img = d.createElement("img");
      img.className = "offerwise-image";
      img.src = image;
      img.alt = ""; // the name follows as text: screen readers would read it twice
      img.setAttribute("loading", "lazy");
      a.appendChild(img);
    }
    a.appendChild(part("div", "offerwise-name", offer.name || ""));
    const p = price(offer.price);
    if (p) a.appendChild(part("div", "offerwise-price", p));
    if (offer.reason) a.appendChild(part("div", "offerwise-reason", offer.reason));
    return a;
  }

  function templateCard(template, offer) {
    const root = template.content && template.content.firstElementChild;
    if (!root) return null;
    const card = root.cloneNode(true);
    const slots = [card].concat(Array.prototype.slice.call(card.querySelectorAll("[data-offerwise-field]")));
    slots.forEach((el) => {
      const field = el.getAttribute("data-offerwise-field");
      if (field === "image") {
        const image = safeUrl(offer.image_url);
        if (image) el.setAttribute("src", image);
      } else if (field === "url") {
        const url = safeUrl(offer.url);
        if (url) el.setAttribute("href", url);
      } else if (FIELDS.indexOf(field) >= 0) {
        el.textContent =
          field === "price" ? price(offer.price) : offer[field] == null ? "" : String(offer[field]);
      }
    });
    return card;
  }

  function card(offer, placement, template) {
    const el = (template && templateCard(template, offer)) || defaultCard(offer);
    el.classList.add("offerwise-offer");
    el.setAttribute("data-product-id", offer.product_id);
    const url = safeUrl(offer.url);
    if (url && el.tagName === "A" && !el.getAttribute("href")) el.setAttribute("href", url);
    el.addEventListener("click", () => {
      try {
        once("offer_click", offer, placement);
        flush(true); // the link is probably leaving the page
      } catch (e) {
        report(w, e);
      }
    });
    return el;
  }

  function draw(el, placement, offers) {
    let list = lists.get(el);
    if (!list || list.parentNode !== el) {
      el.textContent = ""; // the page's placeholder, if any
      list = d.createElement("div");
      list.className = "offerwise-list";
      el.appendChild(list);
      lists.set(el, list);
      if (extra) extra(el, placement);
    }
    Array.prototype.forEach.call(list.children, (old) => unwatch(old));
    list.textContent = "";
    const selector = el.getAttribute("data-offerwise-template");
    const template = selector ? d.querySelector(selector) : null;
    offers.forEach((offer) => {
      if (!offer || !offer.product_id) return;
      const item = card(offer, placement, template);
      list.appendChild(item);
      try {
        watch(item, offer, placement);
      } catch (e) {
        report(w, e); // shown, but its impressions go uncounted
      }
    });
    try {
      el.dispatchEvent(
        new w.CustomEvent("offerwise:offers", { bubbles: true, detail: { placement, offers } }),
      );
    } catch (e) {
      report(w, e);
    }
  }

  function fill(el) {
    const placement = el.getAttribute("data-offerwise-placement") || "default";
    const exclude = (el.getAttribute("data-offerwise-exclude") || "").split(",").filter(Boolean);
    const n = parseInt(el.getAttribute("data-offerwise-count"), 10) || 3;
    return recommend({ placement, n, exclude }).then((res) => {
      try {
        draw(el, placement, (res && res.offers) || []);
      } catch (e) {
        report(w, e);
      }
      return res;
    });
  }

  // Every placement on the page, or those of one name; a promise of their recommend answers.
  function render(name) {
    const els = Array.prototype.filter.call(
      d.querySelectorAll("[data-offerwise-placement]"),
      (el) => !name || el.getAttribute("data-offerwise-placement") === name,
    );
    return Promise.all(els.map(fill));
  }

  return { render };
}
