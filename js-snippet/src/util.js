// Small helpers every part of the snippet shares. Nothing here may throw into the page.

// Web storage that never throws: reading `window.sessionStorage` itself throws where storage
// is disabled (a SecurityError), and writes throw in Safari's private mode or on a full quota.
// The snippet then works for the page only, as it does without consent.
export function storage(w, name) {
  let area = null;
  try {
    area = w[name];
  } catch (e) {
    area = null;
  }
  return {
    get(key) {
      try {
        return area ? area.getItem(key) : null;
      } catch (e) {
        return null;
      }
    },
    set(key, value) {
      try {
        if (area) area.setItem(key, value);
      } catch (e) {
        /* full or refused: the value lives for this page only */
      }
    },
    remove(key) {
      try {
        if (area) area.removeItem(key);
      } catch (e) {
        /* nothing to do */
      }
    },
  };
}

// A random id of 24 hex digits (96 bits): visitor ids and event ids must not be guessable or
// collide, and the collect API accepts [A-Za-z0-9._:-] up to 64 characters.
export function randomId(w) {
  const bytes = new Uint8Array(12);
  const c = w.crypto || w.msCrypto;
  if (c && c.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += (bytes[i] + 256).toString(16).slice(1);
  return out;
}

// What the collect API accepts as a visitor or event id.
export const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

// Runs `fn`, and answers `fallback()` instead of letting an error reach the page: a bug in the
// snippet, an odd browser or a page that patched a built-in must never break the shop.
export function guard(w, fn, fallback) {
  return function () {
    try {
      return fn.apply(this, arguments);
    } catch (e) {
      report(w, e);
      return fallback ? fallback() : undefined;
    }
  };
}

export function report(w, error) {
  try {
    if (w.console) w.console.warn("offerwise:", error);
  } catch (e) {
    /* a console that throws is no reason to throw */
  }
}

// A link or image address the widget may put on the page: http(s), protocol-relative or
// site-relative. A catalog URL such as `javascript:...` would run script on the shop's page.
export function safeUrl(url) {
  return typeof url === "string" && /^(https?:\/\/|\/)/i.test(url) ? url : null;
}
