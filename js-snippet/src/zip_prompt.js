// The optional ZIP prompt (script attribute data-zip-prompt="<placement>"): a small form under
// that placement's offers. A visitor who volunteers a ZIP gets local offers; the answer is told
// in a live region, so screen readers hear it, and a refused ZIP marks the field invalid.

import { guard } from "./util.js";

let forms = 0;

export function createZipPrompt({ w, d, zip, onAccepted, label }) {
  return function attach(el) {
    const id = "offerwise-zip-" + ++forms;
    const form = d.createElement("form");
    form.className = "offerwise-zip";
    form.setAttribute("novalidate", ""); // the snippet explains a bad ZIP itself, in words

    const caption = d.createElement("label");
    caption.setAttribute("for", id);
    caption.textContent = label || "Your ZIP code, for offers near you";

    const input = d.createElement("input");
    input.id = id;
    input.name = "zip";
    input.type = "text";
    input.setAttribute("inputmode", "numeric");
    input.setAttribute("autocomplete", "postal-code");
    input.setAttribute("maxlength", "10");
    input.setAttribute("aria-describedby", id + "-status");

    const button = d.createElement("button");
    button.type = "submit";
    button.textContent = "Show local offers";

    const status = d.createElement("p");
    status.id = id + "-status";
    status.className = "offerwise-zip-status";
    status.setAttribute("role", "status"); // a polite live region

    const answered = guard(w, (code, result) => {
      input.setAttribute("aria-invalid", result.ok ? "false" : "true");
      status.textContent = result.ok ? "Showing offers for " + code + "." : result.reason;
      if (result.ok) onAccepted();
    });
    form.addEventListener(
      "submit",
      guard(w, (event) => {
        event.preventDefault();
        const code = String(input.value || "").trim();
        zip(code).then((result) => answered(code, result));
      }),
    );

    form.appendChild(caption);
    form.appendChild(input);
    form.appendChild(button);
    form.appendChild(status);
    el.appendChild(form);
  };
}
