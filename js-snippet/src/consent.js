// Consent and the visitor id.
//
// Three states: "yes" (the visitor id is kept in localStorage and sent; offers are personal),
// "no" (no identifier leaves the page: the id lives in memory for this page only, every batch
// and offer request says dnt=true, so the service keeps no profile and answers contextual
// offers) and "wait" (the page embeds the snippet with data-consent="required" and has not
// called offerwise.consent() yet: it behaves as "no", and events are held in the queue until
// the answer, so a visitor who accepts on their first page does not lose that page's events).
//
// The browser's Global Privacy Control and Do-Not-Track signals mean "no" whatever the page
// says. The page's choice is kept in sessionStorage, never in a cookie.

import { ID_PATTERN, randomId } from "./util.js";

const CHOICE_KEY = "ow_consent";
const VISITOR_KEY = "ow_vid";

// Whether the browser asks not to be tracked (GPC, or DNT in its historical spellings).
export function privacySignal(w, n) {
  return (
    n.globalPrivacyControl === true ||
    n.doNotTrack === "1" ||
    n.doNotTrack === "yes" ||
    n.msDoNotTrack === "1" ||
    w.doNotTrack === "1"
  );
}

export function createConsent(w, n, session, local, required) {
  const signal = privacySignal(w, n);
  let choice = session.get(CHOICE_KEY); // "1", "0" or null (not asked yet)
  let visitor = null; // the kept id, read from localStorage when first needed
  const pageId = randomId(w); // the memory-only id of an anonymous page

  function state() {
    if (signal || choice === "0") return "no";
    if (choice === "1" || !required) return "yes";
    return "wait";
  }

  if (state() === "no") local.remove(VISITOR_KEY); // an id kept before the refusal is forgotten

  return {
    state,
    signal,
    pageId,
    // The id to send now: the kept one with consent, else this page's memory-only one.
    visitor() {
      if (state() !== "yes") return pageId;
      if (!visitor) {
        visitor = local.get(VISITOR_KEY);
        if (!visitor || !ID_PATTERN.test(visitor)) {
          visitor = randomId(w);
          local.set(VISITOR_KEY, visitor);
        }
      }
      return visitor;
    },
    // The page's answer; returns whether identifiers may now leave the page.
    set(yes) {
      choice = yes ? "1" : "0";
      session.set(CHOICE_KEY, choice);
      if (!yes) {
        local.remove(VISITOR_KEY);
        visitor = null;
      }
      return state() === "yes";
    },
  };
}
